"""Mechanisms shared by every Rapport service. Never imports a service."""
