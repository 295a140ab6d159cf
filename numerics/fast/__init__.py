"""numerics.fast"""
