"""OCI references: `[oci://]HOST[:PORT]/REPOSITORY[:TAG][@sha256:DIGEST]`, read by the rules registries apply.

Neutral ground: the service checks a push destination and a requested id with it, the loader and the registry
client turn it into URLs. Nothing that could leave the repository's URL path (`..`, `%`, upper case, empty parts)
gets through: the name is written into `/v2/<repository>/...` as it is.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from model_manager.core.ids import InvalidId

SCHEME = "oci://"
DEFAULT_TAG = "latest"
# The distribution spec's grammar: lower-case components joined by '/', each separated inside by '.', '_', '__' or
# dashes; a tag of word characters, '.' and '-'; a digest of sha256 (the only algorithm registries all accept).
_COMPONENT = re.compile(r"[a-z0-9]+(?:(?:\.|_|__|-+)[a-z0-9]+)*")
_TAG = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}")
_DIGEST = re.compile(r"sha256:[0-9a-f]{64}")
_HOST = re.compile(r"(?:[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?)(?:\.[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?)*")
_SHAPE = "expected HOST[:PORT]/REPOSITORY[:TAG] or HOST[:PORT]/REPOSITORY@sha256:<64 hex>"


@dataclass(frozen=True)
class OciRef:
    registry: str  # host[:port]
    repository: str  # lower-case path components
    tag: str  # "" when pinned by digest only
    digest: str  # "" unless pinned

    @property
    def reference(self) -> str:
        """What goes after /manifests/: the digest when there is one (it names the bytes), else the tag."""
        return self.digest or self.tag

    @property
    def name(self) -> str:
        return f"{self.registry}/{self.repository}"

    def __str__(self) -> str:
        return self.name + (f":{self.tag}" if self.tag else "") + (f"@{self.digest}" if self.digest else "")

    def with_digest(self, digest: str) -> OciRef:
        return OciRef(self.registry, self.repository, self.tag, digest)


def parse_oci(value: str, field: str = "id", scheme: bool = False) -> OciRef:
    """`value` as an OCI reference; with `scheme`, the `oci://` prefix is required (a push destination)."""
    if scheme and not value.startswith(SCHEME):
        raise InvalidId(f"{field} {value[:120]!r} must be an oci:// reference ({SCHEME}{_SHAPE[9:]})")
    body = value.removeprefix(SCHEME)
    if len(body) > 512:
        raise InvalidId(f"{field} is longer than 512 characters")
    registry, slash, rest = body.partition("/")
    if not slash or not rest:
        raise InvalidId(f"{field} {value[:120]!r}: {_SHAPE}")
    host, colon, port = registry.partition(":")
    if not _HOST.fullmatch(host) or (colon and not (port.isdigit() and 0 < int(port) < 65536)):
        raise InvalidId(f"{field} {value[:120]!r}: {registry[:80]!r} is not a registry host[:port]")
    rest, at, digest = rest.partition("@")
    if at and not _DIGEST.fullmatch(digest):
        raise InvalidId(f"{field} {value[:120]!r}: the digest after '@' must be sha256:<64 lower-case hex>")
    repository, colon, tag = rest.rpartition(":") if ":" in rest else (rest, "", "")
    if colon and not _TAG.fullmatch(tag):
        raise InvalidId(f"{field} {value[:120]!r}: the tag {tag[:80]!r} is letters, digits, '_', '.' and '-'")
    if not all(_COMPONENT.fullmatch(c) for c in repository.split("/")) or len(repository) > 255:
        raise InvalidId(
            f"{field} {value[:120]!r}: the repository {repository[:80]!r} is lower-case letters and digits in "
            "'/'-separated parts, each joined inside by '.', '_', '__' or '-'"
        )
    return OciRef(registry, repository, tag or ("" if at else DEFAULT_TAG), digest)


def allowed(registry: str, allowlist: tuple[str, ...]) -> bool:
    """Whether `registry` may be reached: any when the list is empty."""
    return not allowlist or registry in allowlist
