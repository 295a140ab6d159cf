"""numerics.papers"""
