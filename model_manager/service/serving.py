"""Stored models as Hugging Face repos, for engines that download them (the `/hf` endpoint, `api/hf.py`).

A repo id names a loaded model the caller may see, as GetModel would find it:
- a base model by the id it was requested as (`org/name`) or its stored id (`org-name`);
- any model whose id holds ":" (an Ollama `name:tag`, a fine-tuned `ft:<base>:<suffix>`), which repo ids cannot
  hold, by that id with each ":" written "__" (`ft__org-name__my-suffix`).

Only loaded models are served (never one that is loading, failed or deleted), and the files are the ones the
loader stored and verified, with their sizes and sha256.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass

from model_manager.core.errors import NotFound
from model_manager.core.files import StoredFile
from model_manager.core.identity import Identity, Role
from model_manager.service import access
from model_manager.service.context import ServiceContext
from model_manager.service.lookup import find_visible

_COMMIT = re.compile(r"[0-9a-f]{40}")
# What huggingface_hub accepts as a repo id: an optional namespace, a name of word characters, "-" and ".".
_REPO_ID = re.compile(r"(?:[\w.-]{1,96}/)?[\w.-]{1,96}")


@dataclass(frozen=True)
class StoredRepo:
    repo_id: str  # as the caller named it
    model_id: str
    commit: str  # 40 hex: the Hugging Face commit loaded, or one derived from what the files are
    path: str  # the store prefix of the files
    files: tuple[StoredFile, ...]

    def file(self, path: str) -> StoredFile | None:
        return next((f for f in self.files if f.path == path), None)


class Serving:
    def __init__(self, ctx: ServiceContext) -> None:
        self.ctx = ctx

    async def repo(self, who: Identity, repo_id: str, revision: str) -> StoredRepo:
        """The loaded model `repo_id` names for the caller at `revision` ("main" or its commit). NotFound when there
        is none (whatever the reason: another tenant's model is not found either); RevisionNotFound when the
        revision is neither."""
        access.require(who, Role.READER, "downloading models")
        if not _REPO_ID.fullmatch(repo_id) or ".." in repo_id:
            raise NotFound(f"repository {repo_id!r} not found")
        candidates = list(dict.fromkeys([repo_id, repo_id.replace("/", "-"), repo_id.replace("__", ":")]))
        async with self.ctx.db.reading() as conn:
            for model_id in candidates:
                try:
                    rec = await find_visible(conn, who, model_id, include_loading=False, project_id=who.project_id)
                except NotFound:
                    continue
                if rec.path and rec.files:
                    commit = rec.revision if _COMMIT.fullmatch(rec.revision) else _derived_commit(rec.files)
                    if revision not in ("main", commit):
                        raise RevisionNotFound(f"revision {revision!r} not found in {repo_id} (main, {commit})")
                    return StoredRepo(repo_id, rec.model_id, commit, rec.path, rec.files)
        raise NotFound(f"repository {repo_id!r} not found")


class RevisionNotFound(NotFound):
    pass


def _derived_commit(files: tuple[StoredFile, ...]) -> str:
    """A commit-like id for files not loaded from a Hugging Face commit: changes whenever any file does."""
    listing = "\n".join(f"{f.path}\t{f.size}\t{f.sha256}" for f in sorted(files, key=lambda f: f.path))
    return hashlib.sha1(listing.encode(), usedforsecurity=False).hexdigest()
