"""numerics.papers.samplers"""
