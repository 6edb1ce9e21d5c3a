"""Moved to :mod:`recognize_me.console`; kept for ``flows/predict.py`` until it imports from there."""

from recognize_me.console import filtered_stderr, import_tensorflow_quietly, quiet_environment

__all__ = ["filtered_stderr", "import_tensorflow_quietly", "quiet_environment"]
