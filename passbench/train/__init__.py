"""passbench.train"""
