"""Orchestration above rollback and smoke: release gates, rehearsals and audits."""
