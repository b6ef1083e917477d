"""Fixtures of the ML tests: the session's trained models come from ``tests/conftest.py``."""
