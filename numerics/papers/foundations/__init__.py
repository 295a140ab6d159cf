"""numerics.papers.foundations"""
