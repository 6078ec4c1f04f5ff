"""Test harness for euca.cloud: throwaway network namespaces, a throwaway PostgreSQL,
and ansible-runner helpers. Fixtures are in harness.fixtures (loaded by tests/conftest.py)."""
