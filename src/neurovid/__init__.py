"""neurovid: videos and recordings -> features -> encoding models -> group maps -> report."""

__version__ = "0.1.0"
