"""The ``rollgate`` command line: parses, dispatches, prints. Nothing else.

Layering (checked by import-linter): ``rollgate`` composes ``rollback`` and
``smoke``, which use ``db``; ``db`` uses no other project package.
"""
