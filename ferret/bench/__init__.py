"""``ferret bench``: how fast Ferret's shared-randomness projection runs, against the official
per-seed loop and against the machine's floor (projection.py), what the server pays per round as
the number of clients grows, and what encode + rebuild add to a client's local steps (cost.py)."""
