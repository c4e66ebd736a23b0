"""Learned models (each imports torch itself; nothing here is imported by default)."""
