"""The one exception family of the service layer. Each front maps these to its protocol in one place."""


class ServiceError(Exception):
    """Base class: a request the service refuses, with a message meant for the caller."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class InvalidArgument(ServiceError):
    pass


class NotFound(ServiceError):
    pass


class AlreadyExists(ServiceError):
    pass


class FailedPrecondition(ServiceError):
    pass


class Unavailable(ServiceError):
    pass


class ResourceExhausted(ServiceError):
    """A quota would be exceeded."""


class Unauthenticated(ServiceError):
    """No API key, or one that is unknown, malformed or revoked."""


class PermissionDenied(ServiceError):
    """A valid API key whose role or scope does not allow the call."""
