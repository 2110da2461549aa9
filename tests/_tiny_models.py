"""Tiny random-weight models of the real classes (tests): the demo's own builders.

Loaded through the library's own ``from_pretrained`` path; nothing is downloaded.
"""

from neurovid.demo.models import save_tiny_qwen2vl, save_tiny_vit_classifier

__all__ = ["save_tiny_qwen2vl", "save_tiny_vit_classifier"]
