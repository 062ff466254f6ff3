"""Pieces several stages share, kept below all of them: benchmark problems (`benchmarks`) and
BM25 retrieval (`retrieval`). A module here imports only the leaves (store, errors, ...)."""
