"""numerics.papers.support"""
