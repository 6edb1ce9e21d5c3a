"""recognize-me: CelebA attribute CNNs and a personal "is this me?" classifier.

The package is the pure core: plain, typed functions with no Prefect imports.
The Prefect shell lives in the top-level ``tasks`` and ``flows`` packages.
"""

__version__ = "0.1.0"
