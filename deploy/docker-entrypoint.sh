#!/bin/sh
# Entrypoint of the Rapport image: the first argument chooses the process.
#   ingest     HTTP writes + the outbox relay           (python -m services.ingest)
#   deriver    JetStream consumers, /health + /metrics  (python -m services.deriver)
#   context    get_context, search, representations     (python -m services.context)
#   dialectic  peer.chat                                (python -m services.dialectic)
#   console    the web console at /console              (python -m services.console)
#   allinone   everything in one process, migrates first (python -m allinone)
#   migrate    apply the Alembic history and exit       (python -m alembic upgrade head)
# Any other command is executed as given (e.g. `sh`, `python -m alembic current`).
# Every setting comes from RAPPORT_* environment variables (docs/configuration.md).
set -eu

PYTHON="${PYTHON:-python}"
cmd="${1:-allinone}"
[ "$#" -gt 0 ] && shift

case "$cmd" in
  ingest|deriver|context|dialectic|console)
    exec "$PYTHON" -m "services.$cmd" "$@" ;;
  allinone)
    exec "$PYTHON" -m allinone "$@" ;;
  migrate)
    exec "$PYTHON" -m alembic upgrade head "$@" ;;
  -h|--help|help)
    sed -n '2,11p' "$0" ;;
  *)
    exec "$cmd" "$@" ;;
esac
