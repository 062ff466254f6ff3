"""Curation: score, filter, deduplicate, decontaminate and order a corpus of records."""
