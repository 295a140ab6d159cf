"""numerics.papers.discriminator"""
