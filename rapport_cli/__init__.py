"""The ``rapport`` command-line tool and MCP server, built on the ``rapport`` Python SDK.

``rapport --help`` lists the commands; ``rapport mcp`` serves Rapport's memory to agents over
the Model Context Protocol (stdio). Configuration comes from flags or the environment:
``RAPPORT_BASE_URL``, ``RAPPORT_API_KEY`` and ``RAPPORT_WORKSPACE_ID``.
"""

from __future__ import annotations

__version__ = "0.1.0"

__all__ = ["__version__"]
