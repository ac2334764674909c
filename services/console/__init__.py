"""Web console at /console: browse, perspectives, deriver and playground over the v3 API."""
