"""The one decision of what a load that cannot finish leaves in the store, for each owner and each answer about a
loaded model owning the content."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from model_manager.loader.leftovers import Owner, leave
from model_manager.objectstore.local import LocalStore

PREFIX = "models/base-models/org/m@1234"


async def _chunks(data: bytes) -> AsyncIterator[bytes]:
    yield data


@pytest.mark.parametrize(
    ("owner", "loaded_owns_it", "left"),
    [
        (Owner.NOBODY, False, "nothing"),  # deleted, or failed for good: everything goes
        (Owner.NOBODY, True, "files"),  # another model of the content owns the files: only unfinished goes
        (Owner.ANOTHER, True, "files"),  # taken over and completed by the other loader
        (Owner.ANOTHER, False, "all"),  # the other loader may be writing these keys now
        (Owner.UNKNOWN, False, "all"),  # the server could not say whose they are
        (Owner.NOBODY, None, "all"),  # nor whether a loaded model owns them
    ],
)
async def test_what_stays(tmp_path: Path, owner: Owner, loaded_owns_it: bool | None, left: str) -> None:
    store = LocalStore(tmp_path)
    await store.upload(f"{PREFIX}/config.json", _chunks(b"{}"))
    unfinished = tmp_path / PREFIX / ".model.safetensors.abc.part"
    unfinished.write_bytes(b"half")
    removed: list[str] = []

    async def remove_all() -> None:
        removed.append(PREFIX)
        await store.delete_model_files(PREFIX)

    await leave(store, PREFIX, owner, loaded_owns_it, remove_all)
    files = sorted(p.name for p in (tmp_path / PREFIX).iterdir()) if (tmp_path / PREFIX).exists() else []
    expected = {"nothing": [], "files": ["config.json"], "all": [".model.safetensors.abc.part", "config.json"]}
    assert files == expected[left]
    assert removed == ([PREFIX] if left == "nothing" else [])
