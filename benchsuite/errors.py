"""The host's own exceptions: bad user input (the command line turns it into a clear
message and exit code 2) and a diverged run (a recorded outcome)."""


class UsageError(Exception):
    """Bad input from the user: unknown plugin, task or hyperparameter, bad value, ..."""


class Diverged(Exception):
    """A non-finite training loss or evaluation: the run is recorded as ``diverged``, not failed."""

    def __init__(self, where: str, epoch: int, step: int):
        super().__init__(f"non-finite {where} at epoch {epoch}, step {step}")
        self.where, self.epoch, self.step = where, epoch, step
