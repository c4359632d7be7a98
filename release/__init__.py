"""Orchestration: the gate before a rollout, and the rehearsal of a whole release.

The floor above ``rollback`` and ``smoke`` and below the CLI (``rollgate``):

* ``release.gate``: ``rollgate gate``, the fail-closed go/no-go before ``pulumi up``;
* ``release.rehearse``: ``rollgate rehearse``, the main job on one machine (embedded
  Postgres plays production, moto plays AWS);
* ``release.breaker``: the model of ECS's deployment circuit breaker and the alarms;
* ``release.apps``: the app's processes, traffic and a loopback SQS sandbox;
* ``release.scenarios``: the healthy and the broken releases the rehearsal plays;
* ``release.audit``: ``rollgate audit``, the scheduled adversarial audit.
"""
