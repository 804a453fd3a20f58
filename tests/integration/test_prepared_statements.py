"""The read statements are prepared once per connection, however long their text: a statement asyncpg will not
cache is parsed and planned again on every request (a listing page's was, once its text grew past 15 KiB)."""

from __future__ import annotations

from sqlalchemy.engine import make_url

from model_manager.config import parse_config
from model_manager.store import listing
from model_manager.store.database import Database


async def test_a_listing_page_is_prepared_once_per_connection(pg_url: str, postgres_db: Database) -> None:
    url = make_url(pg_url)
    config = parse_config(
        {"database": {"host": url.host, "port": url.port, "username": url.username, "database": url.database}}
    )
    db = Database.from_config(config)  # the connection settings `model-manager run` uses (postgres_db: migrated)
    try:
        async with db.reading() as conn:
            for include_loading in (False, True):
                scope = listing.ListScope("t-prepared", "", include_loading)
                for _ in range(2):
                    await listing.page(conn, scope, 100, None)
            raw = (await conn.get_raw_connection()).driver_connection
            assert raw is not None
            # Statements asyncpg keeps are named and stay prepared in the session; others leave no trace here.
            kept = await raw.fetch("SELECT statement FROM pg_prepared_statements WHERE NOT from_sql")
        pages = [s for (s,) in kept if "UNION ALL" in s]
        assert len(pages) == 2, [len(s) for (s,) in kept]
        assert min(len(s) for s in pages) > 15 * 1024  # long enough that asyncpg's default would not keep them
    finally:
        await db.close()
