"""passbench.skip"""
