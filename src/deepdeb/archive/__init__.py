"""Publish: built packages into a signed apt repository (reprepro), refusing what may not be
redistributed.
"""
