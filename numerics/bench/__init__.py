"""numerics.bench.timing"""
