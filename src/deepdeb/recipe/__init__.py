"""Recipes: their typed model and the strict TOML loader."""
