"""passbench.metrics"""
