"""Every exception rankcore raises on purpose, in one module that every layer imports from.

Library errors are standard Python exceptions as well, so callers can catch either kind:
``ModelFormatError`` and ``FilterSyntaxError`` are ``ValueError``; the Personalize service
errors are ``PersonalizeError`` subclasses (``InvalidInputException`` is a ``ValueError``,
``ResourceNotFoundException`` a ``LookupError``) whose ``response`` has botocore's error-dict
shape. The contract behind them is written down in ``docs/personalize.md``.
"""
from __future__ import annotations

__all__ = [
    "ModelFormatError", "FilterSyntaxError", "PersonalizeError", "InvalidInputException",
    "ResourceNotFoundException", "AuthError", "BatchError", "EventStoreError", "FILTER_ERROR_PREFIX",
]

#: Every filter error message starts with this.
FILTER_ERROR_PREFIX = "filter expression: "

#: The operation an error belongs to when none is named.
DEFAULT_OPERATION = "GetPersonalizedRanking"


class ModelFormatError(ValueError):
    """A model directory (or the arrays given to build a model) is invalid."""


class FilterSyntaxError(ValueError):
    """A filter expression that does not follow the grammar.

    ``position`` is the 0-based character offset of the offending token, ``expected`` describes
    what the grammar allowed there and ``found`` what was there instead.
    """

    def __init__(self, position: int, expected: str, found: str):
        self.position = position
        self.expected = expected
        self.found = found
        super().__init__(f"{FILTER_ERROR_PREFIX}expected {expected} at position {position}, found {found}")


class PersonalizeError(Exception):
    """Base of the Personalize service errors; ``response`` has botocore's error-dict shape."""

    code = "PersonalizeError"
    http_status = 400

    def __init__(self, message: str = "", operation_name: str = DEFAULT_OPERATION):
        super().__init__(message)
        self.message = message
        self.operation_name = operation_name
        self.response = {"Error": {"Code": self.code, "Message": message},
                         "ResponseMetadata": {"HTTPStatusCode": self.http_status}}

    def __str__(self) -> str:
        return self.message

    def __reduce__(self):
        return type(self), (self.message, self.operation_name)


class InvalidInputException(PersonalizeError, ValueError):
    """The request is invalid (HTTP 400)."""

    code = "InvalidInputException"
    http_status = 400


class ResourceNotFoundException(PersonalizeError, LookupError):
    """The campaign, filter, tracking ID or dataset ARN names nothing (HTTP 404)."""

    code = "ResourceNotFoundException"
    http_status = 404


class AuthError(Exception):
    """A request that fails SigV4 authentication; ``code`` is the service's error type."""

    def __init__(self, code: str, message: str):
        super().__init__(message)
        self.code = code
        self.message = message


class BatchError(Exception):
    """A fatal batch-job error (bad arguments, missing files): the job writes nothing."""


class EventStoreError(ValueError):
    """An event store that cannot be used: not a store, corrupt, locked, closed or failing to write.

    The message names the store's path and the cause.
    """
