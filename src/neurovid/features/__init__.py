"""Feature extractors.

Each extractor returns ``(features [T, D] float32, times [T] seconds, attrs)``,
written by its rule script with :func:`neurovid.io.write_features`. Weight-free
motion energy (:mod:`neurovid.features.motion_energy`, pymoten) is the default.
"""

EXTRACTORS = ("motion_energy",)
