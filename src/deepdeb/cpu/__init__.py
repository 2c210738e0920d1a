"""What a CPU can run: the x86-64 levels, the host, the loader's view of both."""
