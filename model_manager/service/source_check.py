"""What CreateModel learns from a base model's source before accepting it. The check itself is the loader's code,
handed to the service by the composition root (app.py), so the service stays free of any transport."""

from __future__ import annotations

from typing import Protocol

from model_manager.core.file_rule import DEFAULT_RULE, FileRule


class SourceFacts(Protocol):
    @property
    def revision(self) -> str: ...  # what the source resolved the request to (a Hugging Face commit)

    @property
    def total_bytes(self) -> int: ...

    @property
    def files(self) -> int: ...


class SourceCheck(Protocol):
    async def check(
        self, model_id: str, source: int, revision: str, convert: str = "", rule: FileRule = DEFAULT_RULE
    ) -> SourceFacts | None:
        """The source's facts about the files `rule` selects of the model; None when the source could not be asked
        in time (the request is accepted unchecked and the loader finds out). Raises NotFound when the source has
        no such model and PermissionDenied when it will not serve it, each with a message that says how to fix it;
        with `convert` (a GGUF type), InvalidArgument naming the architecture when the model cannot be converted;
        InvalidArgument when the rule selects no file, or pickles it does not allow."""
        ...
