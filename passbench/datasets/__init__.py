"""passbench.datasets"""
