"""Threadline tests; mirrors the source tree (a package so ``tests/core`` never shadows ``core``)."""
