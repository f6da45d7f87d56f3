"""The memory layer: Mem0 behind ``core.ports.MemoryStore``.

``local``: Mem0 open source in the data dir, on a ``core.ports.MemoryIndex`` (the SQLite file of
``vectors``, or PostgreSQL) and a local ONNX embedder. ``platform``: hosted Mem0. Mem0 itself is imported
lazily, on first use, after ``mem0_quirks.import_mem0`` steered its import; ``mem0_quirks`` holds every
Mem0 internal we touch. Which one a process uses is chosen in the composition root
(``core.compose.build_memory``).
"""
