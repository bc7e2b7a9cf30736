"""Errors of the memory package.

MemoryStoreError
├── StoreMisuseError       misuse, raised before the database is touched
│   ├── UnsupportedURLError  a URL that is not one of the supported async drivers; the message lists them
│   └── InvalidMessageError  a message dict without a valid ``kind``, a malformed tool call or result
├── NotFoundError          a thread, run, step, tool invocation or task profile id that does not exist
├── StoreStateError        an operation the stored state does not allow: a step on a finished run, a
│                          second completion of a step, a tool result that contradicts the stored one,
│                          a compaction that raced another one
└── StorageError           the database failed (connection, lock timeout, constraint); wraps the driver's error
    └── MigrationError     the schema could not be brought to the newest revision
"""


class MemoryStoreError(Exception):
    """Base class of the memory package's errors."""


class StoreMisuseError(MemoryStoreError, ValueError):
    """An argument is invalid; raised before any database work is done."""


class UnsupportedURLError(StoreMisuseError):
    """The database URL cannot be parsed or names a driver the store does not support."""


class InvalidMessageError(StoreMisuseError):
    """A message dict is malformed: no or unknown ``kind``, bad tool calls, not JSON-serializable."""


class NotFoundError(MemoryStoreError, LookupError):
    """A thread, run, step, tool invocation or task profile does not exist."""


class StoreStateError(MemoryStoreError, RuntimeError):
    """The stored state does not allow the operation (see the module docstring for the cases)."""


class StorageError(MemoryStoreError, RuntimeError):
    """The database failed; ``__cause__`` holds the driver's exception."""


class MigrationError(StorageError):
    """Running the Alembic migrations failed."""
