"""passbench.tracking"""
