"""Ingest: every write of the Honcho v3 API, the transactional outbox and its relay."""
