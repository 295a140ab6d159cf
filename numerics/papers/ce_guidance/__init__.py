"""numerics.papers.ce_guidance"""
