"""passbench.models"""
