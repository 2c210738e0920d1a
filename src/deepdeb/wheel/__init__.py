"""The wheel stage: a prebuilt wheel repacked as python3-* packages, its dependencies mapped to
bookworm.
"""
