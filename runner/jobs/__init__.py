"""Jobs and their persistence: states, records, the SQLite store. Knows nothing of how work runs."""
