"""The HTTP layer: routers per resource, one error handler (problems.py)."""
