"""Licences: the table, file scanning, ML-Policy, the verdict (area, redistributable), DEP-5
output.
"""
