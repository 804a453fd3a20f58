"""Why a load failed, sorted into what a retry can fix and what it cannot."""

import aiohttp

from model_manager.objectstore.base import StoreError


class LoadError(Exception):
    """A failure to report as the model's loading_failure_reason; the message is meant for a person."""


class PermanentError(LoadError):
    """Retrying cannot help: missing or gated repo, refused credentials, bad format, hash mismatch."""


class SourceNotFound(PermanentError):
    """The source has no such repo, revision, tag or file."""


class SourceDenied(PermanentError):
    """The source refuses to serve it without (other) credentials: a gated or private repo."""


class TransientError(LoadError):
    """A retry may help: connection reset, timeout, 5xx, S3 SlowDown."""


class LeaseLost(Exception):
    """The server refused a status update: another loader holds the model now, or it was deleted."""

    def __init__(self, message: str, deleted: bool) -> None:
        super().__init__(message)
        self.deleted = deleted  # nobody owns the files any more; else the new holder does


def classify(error: BaseException) -> LoadError:
    """Sort any exception met while loading into transient or permanent, by its type, keeping its text."""
    if isinstance(error, LoadError):
        return error
    if isinstance(error, StoreError):
        return (TransientError if error.transient else PermanentError)(str(error))
    if isinstance(error, (aiohttp.ClientConnectionError, aiohttp.ClientPayloadError, OSError, TimeoutError)):
        # Connection refused or reset, a body cut short, a timeout: the next try may get through.
        return TransientError(f"{type(error).__name__}: {error}" if str(error) else type(error).__name__)
    return PermanentError(f"{type(error).__name__}: {error}")


def http_error(status: int, what: str) -> LoadError:
    """An HTTP status from a source: 429 and 5xx may pass, anything else will not."""
    if status == 429 or status >= 500:
        return TransientError(f"{what}: HTTP {status}")
    if status == 404:
        return SourceNotFound(f"{what}: HTTP 404")
    if status in (401, 403):
        return SourceDenied(f"{what}: HTTP {status}")
    return PermanentError(f"{what}: HTTP {status}")
