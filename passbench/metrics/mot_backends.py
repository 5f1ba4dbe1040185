"""The MOT evaluation backends ``passbench.metrics.mot`` offers, in a module of their own so that config
checks can name them without importing pandas / scipy (``passbench speed`` runs without them)."""

BACKENDS = ("trackeval", "motmetrics")
