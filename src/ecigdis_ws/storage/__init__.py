"""Persistence: one interface (`Storage`), SQL in `SqlStorage`, one engine per database."""
