"""How settings are declared and read: each key once, with its YAML path, type, default, check and description.

A settings class is a frozen dataclass whose fields are declared with `setting(...)`. The reader, the unknown-key
check and the reference table in docs/configuration.md are all derived from those declarations, so a key cannot
be added in one place and forgotten in another. Every error names the key path (`objectStore.s3.bucket: required`).
"""

from __future__ import annotations

import dataclasses
import logging
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, ClassVar, Protocol, TypeVar

log = logging.getLogger("model_manager.config")


class ConfigError(ValueError):
    """A configuration problem; the message starts with the key path."""


# ---- value kinds ---------------------------------------------------------------------------------------------


class Kind(Protocol):
    @property
    def name(self) -> str:
        """How docs/configuration.md names the type."""

    def parse(self, value: Any, path: str) -> Any: ...


@dataclass(frozen=True)
class Str:
    choices: tuple[str, ...] = ()
    fold_case: bool = False  # compare and keep in lower case (upstream files write `LoRA` as well as `lora`)
    name: str = "string"

    def parse(self, value: Any, path: str) -> str:
        if not isinstance(value, str):
            raise ConfigError(f"{path}: must be a string")
        text = value.lower() if self.fold_case else value
        if self.choices and text not in self.choices:
            raise ConfigError(f"{path}: must be one of {', '.join(self.choices)}; got {value!r}")
        return text


@dataclass(frozen=True)
class Bool:
    name: str = "bool"

    def parse(self, value: Any, path: str) -> bool:
        if not isinstance(value, bool):
            raise ConfigError(f"{path}: must be true or false")
        return value


@dataclass(frozen=True)
class Int:
    minimum: int = 0
    maximum: int | None = None
    name: str = "integer"

    def parse(self, value: Any, path: str) -> int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(f"{path}: must be an integer")
        if value < self.minimum or (self.maximum is not None and value > self.maximum):
            bound = f"between {self.minimum} and {self.maximum}" if self.maximum is not None else f">= {self.minimum}"
            raise ConfigError(f"{path}: must be {bound}, got {value}")
        return value


PORT = Int(0, 65535, name="port")

_DURATION = re.compile(r"^(\d+(?:\.\d+)?)(ms|s|m|h)$")
_UNIT_SECONDS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0}


@dataclass(frozen=True)
class Duration:
    """`30s`, `5m`, `500ms`, `1h` (or a number of seconds); read as float seconds."""

    positive: bool = False
    name: str = "duration"

    def parse(self, value: Any, path: str) -> float:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            seconds = float(value)
        elif isinstance(value, str) and (m := _DURATION.match(value.strip())):
            seconds = float(m.group(1)) * _UNIT_SECONDS[m.group(2)]
        else:
            raise ConfigError(f"{path}: must be a duration like '30s' or '5m', got {value!r}")
        if seconds < 0:
            raise ConfigError(f"{path}: must not be negative")
        if self.positive and seconds == 0:
            raise ConfigError(f"{path}: must be greater than 0")
        return seconds


@dataclass(frozen=True)
class StrList:
    name: str = "list of strings"

    def parse(self, value: Any, path: str) -> tuple[str, ...]:
        if not isinstance(value, list) or not all(isinstance(v, str) and v for v in value):
            raise ConfigError(f"{path}: must be a list of non-empty strings")
        return tuple(value)


S = TypeVar("S")


@dataclass(frozen=True)
class Section:
    """A nested mapping read into its own settings class. An optional section is None when absent; any other is
    read even when absent (its defaults, and keys an upstream file gave at the top level)."""

    cls: type[Any]
    optional: bool = False
    sees_top_level: bool = False  # its top_level keys may be given at the top level of the file
    name: str = "mapping"

    def parse(self, value: Any, path: str) -> Any:
        return read_section(self.cls, value, path)


@dataclass(frozen=True)
class ListOf:
    """A list of mappings, each read into `cls`; paths say `models[2].baseModel`."""

    cls: type[Any]
    name: str = "list of mappings"

    def parse(self, value: Any, path: str) -> tuple[Any, ...]:
        if not isinstance(value, list):
            raise ConfigError(f"{path}: must be a list")
        return tuple(read_section(self.cls, item, f"{path}[{i}]") for i, item in enumerate(value))


# ---- declarations --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Key:
    path: str  # inside the section; dots step into plain sub-mappings (`debug.sqlitePath`)
    kind: Kind
    doc: str
    required: bool = False
    aliases: tuple[str, ...] = ()  # other names upstream files use for the same key
    top_level: bool = False  # upstream loader files give this key at the top level of the file
    example: str = ""


_NO_DEFAULT: Any = object()


def setting(
    path: str,
    kind: Kind,
    default: Any = _NO_DEFAULT,
    doc: str = "",
    *,
    required: bool = False,
    aliases: tuple[str, ...] = (),
    top_level: bool = False,
    example: str = "",
) -> Any:
    """Declare a field as the setting at `path`. A required setting has no default."""
    meta = {"key": Key(path, kind, doc, required, aliases, top_level, example)}
    if default is _NO_DEFAULT:
        return field(metadata=meta)
    if dataclasses.is_dataclass(default):
        return field(default_factory=lambda: default, metadata=meta)
    return field(default=default, metadata=meta)


class Settings:
    """Base of settings classes: optional hooks run after every key of the section was read."""

    # Keys upstream files carry that mean nothing here: accepted with a warning. Key path -> why.
    IGNORED: ClassVar[Mapping[str, str]] = {}

    def check(self, where: Mapping[str, str]) -> None:
        """Rules across keys; `where` maps each field name to the key path it was read from."""


def keys(cls: type[Any]) -> list[tuple[dataclasses.Field[Any], Key]]:
    return [(f, f.metadata["key"]) for f in dataclasses.fields(cls) if "key" in f.metadata]


# ---- reading -------------------------------------------------------------------------------------------------


class _Mapping:
    """A YAML mapping being read: remembers which keys were used, so leftovers can be reported."""

    def __init__(self, data: Any, path: str) -> None:
        if data is None:
            data = {}
        if not isinstance(data, dict):
            raise ConfigError(f"{path or '<root>'}: must be a mapping")
        self.data: dict[str, Any] = data
        self.path = path
        self.used: set[str] = set()
        self.children: dict[str, _Mapping] = {}

    def full(self, key: str) -> str:
        return f"{self.path}.{key}" if self.path else key

    def child(self, key: str) -> _Mapping:
        if key not in self.children:
            self.used.add(key)
            self.children[key] = _Mapping(self.data.get(key), self.full(key))
        return self.children[key]

    def lookup(self, dotted: str) -> tuple[_Mapping, str] | None:
        """The mapping holding the last segment of `dotted` and that segment, if every step is present."""
        *steps, last = dotted.split(".")
        here = self
        for step in steps:
            if step not in here.data:
                return None
            here = here.child(step)
        return (here, last) if last in here.data else None

    def check_unknown(self, ignored: Mapping[str, str], base: str) -> None:
        for key in self.data:
            if key in self.children:
                self.children[key].check_unknown(ignored, base)
                continue
            if key in self.used:
                continue
            full = self.full(key)
            relative = full[len(base) + 1 :] if base else full
            if relative in ignored:
                log.warning(
                    "config key %s has no meaning in model-manager and is ignored (%s)", full, ignored[relative]
                )
                continue
            raise ConfigError(f"{full}: unknown key")


def read_section(cls: type[S], data: Any, path: str, outer: _Mapping | None = None) -> S:
    """Read `data` (found at `path`) into the settings class `cls`. Keys declared `top_level` may instead be
    given in `outer` (the file's root mapping), as upstream loader files do; the section's own key wins."""
    here = _Mapping(data, path)
    values: dict[str, Any] = {}
    where: dict[str, str] = {}
    for f, key in keys(cls):
        found = _find(here, key, outer)
        raw = None
        if found is None:
            where[f.name] = here.full(key.path)
            if key.required:
                raise ConfigError(f"{where[f.name]}: required")
        else:
            owner, name = found
            owner.used.add(name)
            where[f.name] = owner.full(name)
            raw = owner.data[name]
        if isinstance(key.kind, Section):
            if raw is not None or not key.kind.optional:
                values[f.name] = read_section(
                    key.kind.cls, raw, where[f.name], here if key.kind.sees_top_level else None
                )
        elif found is not None:
            values[f.name] = key.kind.parse(raw, where[f.name])
    here.check_unknown(getattr(cls, "IGNORED", {}), path)
    settings = cls(**values)
    if isinstance(settings, Settings):
        settings.check(where)
    return settings


def _find(here: _Mapping, key: Key, outer: _Mapping | None) -> tuple[_Mapping, str] | None:
    given = [(name, hit) for name in (key.path, *key.aliases) if (hit := here.lookup(name)) is not None]
    if len(given) > 1:
        names = " or ".join(here.full(name) for name, _ in given)
        raise ConfigError(f"{here.full(given[-1][0])}: give either {names}, not both")
    if given:
        return given[0][1]
    if key.top_level and outer is not None:
        for name in (key.path, *key.aliases):
            if (hit := outer.lookup(name)) is not None:
                return hit
    return None
