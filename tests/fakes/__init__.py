"""Local fake servers that stand in for the platforms and the LLM in tests: they only bind 127.0.0.1."""
