"""Fetch and cache sources: Debian source packages, pinned URLs and git commits, wheels from disk
or PyPI.
"""
