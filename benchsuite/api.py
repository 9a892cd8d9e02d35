"""The Python API: what every command calls (docs/python-api.md)."""
