"""Retrieval over what one observer may know (hybrid vector + full-text search, time phrases)."""
