#!/usr/bin/env bash
# Side by side: this server (SQLite, then MariaDB) and the Node.js reference peer,
# the same `ecigdis-ws bench` scenarios against each in one run. Writes a results
# JSON and a markdown table (ratios, machine, commands, date) for BENCHMARKS.md.
#
#   benchmarks/compare.sh                  # everything, two alternating rounds
#   benchmarks/compare.sh --rounds 1 --scenarios chat,connect
#   benchmarks/compare.sh --help
#
# Needs: the project's venv (make install), node and npm, MariaDB on 127.0.0.1:3306
# (root, no password; database ecigdis_bench is created), and open files: every
# connection is a descriptor in the server and in the generator.
set -euo pipefail
cd "$(dirname "$0")/.."

# 10,000 connections need ~10,000 descriptors in the server: lift the soft limit to
# the hard one, and the hard one to 65536 where this user may (root outside a
# container usually may; inside one often not).
ulimit -Hn 65536 2>/dev/null || true
ulimit -n "$(ulimit -Hn)" 2>/dev/null || true
echo "open files: soft $(ulimit -Sn), hard $(ulimit -Hn)" >&2

PYTHON=${PYTHON:-.venv/bin/python}
exec "$PYTHON" benchmarks/compare.py "$@"
