"""Synthetic data made by a teacher model (textbook sections so far)."""
