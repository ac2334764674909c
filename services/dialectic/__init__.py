"""The dialectic service (read path). Its routes arrive with the read-path issue."""
