"""The ISA stage: build per x86-64 level, measure, assemble glibc-hwcaps packages, verify them
installed.
"""
