"""Stacks: many recipes in one run, each source a task on a Dask cluster, results
cached by content."""
