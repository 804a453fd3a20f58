"""What a request asks to store of a base model's source: include/exclude globs and whether pickles may be stored.

Neutral ground: the service checks and records it, the loader applies it (`loader/selection.py`), the store keeps
it as JSON in the model row ("" for the default: no patterns, no pickles).
"""

from __future__ import annotations

import fnmatch
import json
from collections.abc import Sequence
from dataclasses import dataclass

from model_manager.core.errors import InvalidArgument

MAX_PATTERNS = 64
MAX_PATTERN_LEN = 512


@dataclass(frozen=True)
class FileRule:
    include: tuple[str, ...] = ()
    exclude: tuple[str, ...] = ()
    allow_pickle: bool = False

    @property
    def default_selection(self) -> bool:
        return not self.include and not self.exclude

    def included(self, path: str) -> bool:
        return not self.include or any(_match(path, p) for p in self.include)

    def excluded_by(self, path: str) -> str:
        """The first exclude pattern `path` matches, "" for none."""
        return next((p for p in self.exclude if _match(path, p)), "")

    def patterns(self) -> str:
        """The patterns as a message names them."""
        said = [f"include {list(self.include)}"] if self.include else []
        return ", ".join(said + ([f"exclude {list(self.exclude)}"] if self.exclude else []))

    def encode(self) -> str:
        if self == DEFAULT_RULE:
            return ""
        return json.dumps({"include": self.include, "exclude": self.exclude, "allow_pickle": self.allow_pickle})

    @classmethod
    def decode(cls, stored: str) -> FileRule:
        if not stored:
            return DEFAULT_RULE
        raw = json.loads(stored)
        return cls(tuple(raw["include"]), tuple(raw["exclude"]), bool(raw["allow_pickle"]))

    @classmethod
    def checked(cls, include: Sequence[str], exclude: Sequence[str], allow_pickle: bool) -> FileRule:
        """The rule of a request, or InvalidArgument naming the pattern that cannot be one."""
        for name, patterns in (("include", include), ("exclude", exclude)):
            if len(patterns) > MAX_PATTERNS:
                raise InvalidArgument(f"{name}: at most {MAX_PATTERNS} patterns, got {len(patterns)}")
            for p in patterns:
                if not p or len(p) > MAX_PATTERN_LEN or "\x00" in p or p.startswith("/"):
                    raise InvalidArgument(
                        f"{name}: {p[:80]!r} is not a pattern (a glob over repo-relative paths such as "
                        f"'*.safetensors' or 'tokenizer/', 1 to {MAX_PATTERN_LEN} characters)"
                    )
        return cls(tuple(include), tuple(exclude), allow_pickle)


DEFAULT_RULE = FileRule()


def _match(path: str, pattern: str) -> bool:
    # As huggingface_hub's allow_patterns: fnmatch ("*" crosses "/"), and "dir/" means everything below it.
    return fnmatch.fnmatchcase(path, pattern + "*" if pattern.endswith("/") else pattern)
