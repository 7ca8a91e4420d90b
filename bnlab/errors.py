"""Errors that mean "the input is wrong": reported as one line, before any training.

Every error here survives a pickle round trip: a sweep job raises it in a joblib worker (or
a SLURM task) and it must arrive in the launching process intact, naming the key, instead
of breaking the pool. `__reduce__` rebuilds each from its own arguments, since pickle's
default calls the class with `args` (the formatted message) alone.
"""


class InputError(Exception):
    """Bad input. `key` is the config key at fault; the message says what is allowed."""

    def __init__(self, key: str, message: str):
        super().__init__(f"{key}: {message}")
        self.key, self.message = key, message

    def __reduce__(self):
        return type(self), (self.key, self.message)


class ConfigError(InputError):
    """A config value is invalid."""


class DataError(InputError):
    """The dataset cannot be found, fetched or verified."""


class StoreWriteError(Exception):
    """A run's records could not be written (permissions, a full disk, a read-only folder).

    Not bad input: the run cannot be kept, so the sweep stops at once instead of training
    runs whose results would be lost. The message names the path and the cause."""

    def __init__(self, path, cause: OSError | str):
        reason = cause if isinstance(cause, str) else (cause.strerror or str(cause))
        super().__init__(f"cannot write {path}: {reason}")
        self.path, self.reason = str(path), reason

    def __reduce__(self):
        return type(self), (self.path, self.reason)
