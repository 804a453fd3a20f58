"""What a load that cannot finish leaves in the store: one decision, for every way a load ends early (a refusal of
its files, a lost claim, a deleted model, a result the server refused)."""

from __future__ import annotations

import asyncio
import enum
from collections.abc import Awaitable, Callable

from model_manager.objectstore.base import ObjectStore


class Owner(enum.Enum):
    """Whose the keys a load wrote are, as far as the server says."""

    NOBODY = "nobody"  # the model was deleted, or this load failed for good while it still held the model
    ANOTHER = "another"  # another loader holds the model now and may be writing the same keys
    UNKNOWN = "unknown"  # the server could not say


async def leave(
    store: ObjectStore,
    prefix: str,
    owner: Owner,
    loaded_owns_it: bool | None,
    remove_all: Callable[[], Awaitable[object]],
) -> None:
    """Remove what nobody else may use, and nothing more:

    - a loaded model owns the content (another load of it completed): its files stay, and whatever was begun
      there since (an open upload, a `.part` file) is nobody's and goes;
    - nobody owns the keys: everything this load wrote goes (`remove_all`);
    - another loader owns them, or the server could not say (`loaded_owns_it` None, or Owner.UNKNOWN): everything
      stays, for that loader, the next attempt or a delete of the model.

    Shielded: a loader being cancelled still finishes the removal it began."""
    if loaded_owns_it:
        await asyncio.shield(store.clear_unfinished(prefix.rstrip("/") + "/"))
    elif loaded_owns_it is False and owner is Owner.NOBODY:
        await asyncio.shield(remove_all())
