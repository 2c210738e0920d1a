"""Inventory: what a source tree would download (Bazel, CMake, ...) and which Debian packages
provide it.
"""
