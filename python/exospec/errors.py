"""The exceptions of exospec.

Each carries the one-line message that the ``exospec`` command prints after
``exospec: error:`` (the file and the object or key, then what is wrong).
Arrays that do not fit a call raise the built-in TypeError (dtype) or
ValueError (shape, contiguity, NaN where a value is needed).
"""


class Error(Exception):
    """Base of the errors that exospec's library reports."""


class FileError(Error, OSError):
    """A file, or an object inside it, that cannot be used (unreadable, not HDF5, truncated, unwritable)."""


class FileNotFound(FileError, FileNotFoundError):
    """A file (or the folder of an output) that does not exist."""


class SchemaError(FileError):
    """A file that breaks the data contract (shared/SCHEMA.md): a missing object, a wrong dtype or shape."""


class ConfigError(Error, ValueError):
    """A bad configuration key or value, or a bad option."""


__all__ = ["Error", "FileError", "FileNotFound", "SchemaError", "ConfigError"]
