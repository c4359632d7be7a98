"""The workflow service Rollgate deploys: a web API and a queue worker.

``python -m app web`` serves the API (FastAPI on uvicorn): task submission with
a transactional outbox, the Stripe webhook log, the ROI report and health.
``python -m app worker`` consumes the SQS task queue.

This package imports only ``core`` and ``infra.outputs``; nothing imports it.
"""
