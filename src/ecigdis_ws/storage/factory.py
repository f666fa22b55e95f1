"""Choose the storage backend from DATABASE_URL."""

from __future__ import annotations

from ecigdis_ws.clock import Clock
from ecigdis_ws.settings import Settings
from ecigdis_ws.storage.mariadb import MariaDbEngine, PoolOptions
from ecigdis_ws.storage.sql import SqlStorage
from ecigdis_ws.storage.sqlite import SqliteEngine


async def open_storage(settings: Settings, clock: Clock | None = None) -> SqlStorage:
    """The storage DATABASE_URL names; its write deadlines kept on `clock` (the
    one the services compute them with)."""
    timeout_s = settings.db_timeout_ms / 1000
    url = settings.database_url
    engine: SqliteEngine | MariaDbEngine
    if url.startswith("sqlite://"):
        engine = await SqliteEngine.open(url, timeout_s)
    else:
        pool = PoolOptions(
            min_size=settings.db_pool_min,
            max_size=settings.db_pool_max,
            connect_timeout_s=settings.db_connect_timeout_ms / 1000,
            recycle_s=settings.db_pool_recycle_s,
        )
        engine = await MariaDbEngine.open(url, timeout_s, pool, settings.db_table_prefix)
    return SqlStorage(engine, settings.db_table_prefix, settings.user_id_type, clock)
