"""Synthetic CelebA-format data (drawn faces, attribute/partition/identity files) so the demo and
tests need no download.
"""
