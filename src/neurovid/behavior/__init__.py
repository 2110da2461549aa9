"""Behavior: pose features, frame classifier, action localization."""
