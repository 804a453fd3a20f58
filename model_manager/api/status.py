"""Service errors to gRPC status codes: the single table both fronts use."""

from __future__ import annotations

from grpclib.const import Status

from model_manager import errors

_STATUS_BY_ERROR: dict[type[errors.ServiceError], Status] = {
    errors.InvalidArgument: Status.INVALID_ARGUMENT,
    errors.NotFound: Status.NOT_FOUND,
    errors.AlreadyExists: Status.ALREADY_EXISTS,
    errors.FailedPrecondition: Status.FAILED_PRECONDITION,
    errors.Unavailable: Status.UNAVAILABLE,
    errors.Unauthenticated: Status.UNAUTHENTICATED,
    errors.PermissionDenied: Status.PERMISSION_DENIED,
}


def status_of(error: errors.ServiceError) -> Status:
    # Walk the MRO so a subclass of a known error maps like its parent.
    for cls in type(error).__mro__:
        if cls in _STATUS_BY_ERROR:
            return _STATUS_BY_ERROR[cls]
    return Status.UNKNOWN
