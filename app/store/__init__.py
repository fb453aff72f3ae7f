"""Where metric state lives: the in-memory store or Redis (see base.py for the protocol)."""
