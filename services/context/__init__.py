"""The context service (read path). Its routes arrive with the read-path issue."""
