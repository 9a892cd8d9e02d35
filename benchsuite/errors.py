"""Errors the command line turns into a clear message and exit code 2."""


class UsageError(Exception):
    """Bad input from the user: unknown plugin, task or hyperparameter, bad value, ..."""
