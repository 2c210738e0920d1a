"""Containment: the build sandbox (bubblewrap, limits, no network), its network guard, the clean
room.
"""
