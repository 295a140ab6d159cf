"""numerics.papers.discrete_kl"""
