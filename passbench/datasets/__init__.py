"""passbench.datasets"""

# What a bad frame file does (``passbench.datasets.mot.MOTSequence``): raise (default), or is left out and
# counted. ``passbench run --on-corrupt-frame skip`` sets the variable; ``passbench.runner.mot`` reads it.
ON_CORRUPT_FRAME = ("error", "skip")
CORRUPT_FRAME_ENV = "PASSBENCH_ON_CORRUPT_FRAME"
