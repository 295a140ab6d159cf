"""numerics.references"""
