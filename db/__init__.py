"""Rollgate's database layer: the canonical schema, its migrations and the runner.

``db`` is the bottom layer of Rollgate. It imports no other project package, so
the error root every other package raises from lives here (``db.errors``).
"""
