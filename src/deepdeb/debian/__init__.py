"""The Debian layer every stage shares: .deb files, apt queries, ELF facts, lintian, the target
release.
"""
