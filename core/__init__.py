"""Rollgate's base layer: what every other package may use, and nothing more.

* ``core.errors``   the one error hierarchy (its categories decide exit codes);
* ``core.progress`` the ``Progress`` callback type for long work;
* ``core.postgres`` connect, DSNs described without passwords, the server's disk;
* ``core.redaction`` the process-wide secret registry, scrubbed from all output;
* ``core.sizes``    human sizes ("250MB") to bytes;
* ``core.pgtools``  PostgreSQL client tools (pg_dump, pg_restore, psql).

It imports no other project package; import-linter holds that in CI.
"""
