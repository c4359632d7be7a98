"""Rollgate's CrossGuard policy pack: `policies.POLICIES`, served by `__main__`."""
