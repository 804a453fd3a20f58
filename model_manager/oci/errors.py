"""What a registry's refusals mean, read from its status and its error body (the distribution spec's codes)."""

from __future__ import annotations

import json


class RegistryError(Exception):
    """A registry refused or failed a request; `transient` when trying again may help."""

    def __init__(self, message: str, transient: bool = False, status: int = 0) -> None:
        super().__init__(message)
        self.message = message
        self.transient = transient
        self.status = status  # the registry's HTTP status, when it answered


class RegistryNotFound(RegistryError):
    """No such repository, tag, manifest or blob."""


class RegistryDenied(RegistryError):
    """The registry wants credentials it was not given, or refuses the ones it was."""


def _codes(body: bytes) -> list[tuple[str, str]]:
    try:
        doc = json.loads(body)
        return [(str(e.get("code", "")), str(e.get("message", ""))) for e in doc.get("errors", [])]
    except (ValueError, AttributeError, TypeError):
        return []


def from_response(status: int, body: bytes, what: str) -> RegistryError:
    """The error for a registry's answer `status` (with its body) to `what` ("manifest r/x:1", ...)."""
    codes = _codes(body)
    names = {c for c, _ in codes}
    said = "; ".join(f"{c}: {m}" if m else c for c, m in codes) or f"HTTP {status}"
    if "NAME_UNKNOWN" in names:
        return RegistryNotFound(f"{what}: the repository does not exist ({said})", status=status)
    if "MANIFEST_UNKNOWN" in names or (status == 404 and "manifest" in what):
        return RegistryNotFound(f"{what}: no such tag or manifest in the repository ({said})", status=status)
    if status == 404:
        return RegistryNotFound(f"{what}: not found ({said})", status=status)
    if status in (401, 403) or names & {"DENIED", "UNAUTHORIZED"}:
        denied = f"{what}: denied ({said}); check the credentials configured for this registry"
        return RegistryDenied(denied, status=status)
    if status == 429 or (status >= 500 and status != 501) or "TOOMANYREQUESTS" in names:
        return RegistryError(f"{what}: {said}", transient=True, status=status)
    return RegistryError(f"{what}: {said}", status=status)
