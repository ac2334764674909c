"""The deriver: JetStream consumers that turn messages into representations (next issue)."""
