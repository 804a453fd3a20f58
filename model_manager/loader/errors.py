"""Why a load failed, sorted into what a retry can fix and what it cannot."""


class LoadError(Exception):
    """A failure to report as the model's loading_failure_reason; the message is meant for a person."""


class PermanentError(LoadError):
    """Retrying cannot help: missing or gated repo, refused credentials, bad format, hash mismatch."""


class TransientError(LoadError):
    """A retry may help: connection reset, timeout, 5xx, S3 SlowDown."""


class LeaseLost(Exception):
    """The server refused a status update: another loader holds the model now, or it was deleted."""


_TRANSIENT_S3_CODES = {
    "SlowDown",
    "InternalError",
    "ServiceUnavailable",
    "RequestTimeout",
    "RequestTimeTooSkewed",
    "Throttling",
    "500",
    "502",
    "503",
    "504",
}


def classify(error: BaseException) -> LoadError:
    """Sort any exception met while loading into transient or permanent, keeping its text."""
    if isinstance(error, LoadError):
        return error
    code = _s3_error_code(error)
    if code is not None:
        kind = TransientError if code in _TRANSIENT_S3_CODES else PermanentError
        return kind(f"S3 error {code}: {error}")
    if isinstance(error, (ConnectionError, TimeoutError, OSError)):
        return TransientError(f"{type(error).__name__}: {error}" if str(error) else type(error).__name__)
    name = type(error).__name__
    if name in ("ClientPayloadError", "ServerDisconnectedError", "ClientConnectionError", "ClientOSError"):
        return TransientError(f"{name}: {error}")
    return PermanentError(f"{name}: {error}")


def _s3_error_code(error: BaseException) -> str | None:
    response = getattr(error, "response", None)
    if isinstance(response, dict) and "Error" in response:
        return str(response["Error"].get("Code", ""))
    return None


def http_error(status: int, what: str) -> LoadError:
    """An HTTP status from a source: 429 and 5xx may pass, anything else will not."""
    if status == 429 or status >= 500:
        return TransientError(f"{what}: HTTP {status}")
    return PermanentError(f"{what}: HTTP {status}")
