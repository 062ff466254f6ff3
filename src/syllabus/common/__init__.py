"""Pieces several stages share, kept below all of them: benchmark problems (`benchmarks`),
BM25 retrieval (`retrieval`), pass@k (`estimators`), and shingling, MinHash and the
near-duplicate index (`neardup`: curation's dedup and synth's check of what the teacher
writes). A module here imports only the leaves (store, errors, ...)."""
