"""Service errors to gRPC status codes: the single table both fronts use."""

from __future__ import annotations

from typing import Any

from grpclib.const import Status

from model_manager.core import errors

_STATUS_BY_ERROR: dict[type[errors.ServiceError], Status] = {
    errors.InvalidArgument: Status.INVALID_ARGUMENT,
    errors.NotFound: Status.NOT_FOUND,
    errors.AlreadyExists: Status.ALREADY_EXISTS,
    errors.FailedPrecondition: Status.FAILED_PRECONDITION,
    errors.Unavailable: Status.UNAVAILABLE,
    errors.ResourceExhausted: Status.RESOURCE_EXHAUSTED,
    errors.Unauthenticated: Status.UNAUTHENTICATED,
    errors.PermissionDenied: Status.PERMISSION_DENIED,
}


def status_of(error: errors.ServiceError) -> Status:
    # Walk the MRO so a subclass of a known error maps like its parent.
    for cls in type(error).__mro__:
        if cls in _STATUS_BY_ERROR:
            return _STATUS_BY_ERROR[cls]
    return Status.UNKNOWN


def error_body(status: Status, message: str, request_id: str | None = None) -> dict[str, Any]:
    """The REST error document: gRPC-gateway's fields (code, message, details) and OpenAI's `error` object."""
    body: dict[str, Any] = {
        "code": status.value,
        "message": message,
        "details": [],
        "error": {"message": message, "type": status.name.lower(), "code": status.value},
    }
    if request_id:
        body["request_id"] = request_id  # what to quote when reporting the error; the server's log line has it
    return body
