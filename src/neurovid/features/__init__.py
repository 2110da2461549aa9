"""Feature extractors.

Each extractor returns ``(features [T, D] float32, times [T] seconds, attrs)``,
written by its rule script with :func:`neurovid.io.write_features`. Weight-free
motion energy (:mod:`neurovid.features.motion_energy`, pymoten) is the default.

The learned extractors (torch, the ``features`` extra) stream their rows into
the same contract themselves (:class:`neurovid.features.runtime.FeatureWriter`):
:mod:`~neurovid.features.vit` (ViT / DINOv2 per frame),
:mod:`~neurovid.features.vivit` (ViViT per clip), :mod:`~neurovid.features.slowfast`
(SlowFast R50 pooled features + Kinetics-400 logits) and
:mod:`~neurovid.features.qwen2vl` (Qwen2-VL clip embeddings); the shared CUDA/CPU
runtime, preprocessing, clip windows and model loading are in
:mod:`~neurovid.features.runtime`.
"""

EXTRACTORS = ("motion_energy", "vit", "vivit", "slowfast", "qwen2vl")
