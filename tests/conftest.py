"""Fixtures shared by the tests. The environment (quick mode, offline mode) is set in the
repository's root conftest.py, which every way of running pytest loads."""
