"""Errors that mean "the input is wrong": reported as one line, before any training."""


class InputError(Exception):
    """Bad input. `key` is the config key at fault; the message says what is allowed."""

    def __init__(self, key: str, message: str):
        super().__init__(f"{key}: {message}")
        self.key = key


class ConfigError(InputError):
    """A config value is invalid."""


class DataError(InputError):
    """The dataset cannot be found, fetched or verified."""
