"""passbench: reference benchmark and evaluation suite for patch-skipping video CNNs."""

__version__ = "0.1.0"
