"""Errors shared by modules that must stay light to import (the history worker imports no pydantic models)."""


class ConfigError(Exception):
    """A config that cannot be used; the message is one line naming the field and the problem."""
