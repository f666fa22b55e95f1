"""Operator tooling: `ecigdis-ws check`, `ecigdis-ws config`, systemd readiness."""
