"""passbench.report"""
