"""Persistence: one interface (`Storage`), SQL in one store per topic composed by
`SqlStorage`, one engine and one dialect object per database."""
