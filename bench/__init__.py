"""Benchmark scripts (run them as ``python -m bench.<name>`` or ``python bench/<name>.py``)."""
