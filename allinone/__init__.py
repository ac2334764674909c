"""The all-in-one process: every router and every consumer of every service in one process."""
