"""Choose the storage backend from DATABASE_URL."""

from __future__ import annotations

from ecigdis_ws.settings import Settings
from ecigdis_ws.storage.sql import SqlStorage
from ecigdis_ws.storage.sqlite import SqliteEngine


async def open_storage(settings: Settings) -> SqlStorage:
    timeout_s = settings.db_timeout_ms / 1000
    url = settings.database_url
    if url.startswith("sqlite://"):
        engine = await SqliteEngine.open(url, timeout_s)
        return SqlStorage(engine, settings.db_table_prefix, settings.user_id_type)
    raise ValueError(
        f"DATABASE_URL={url.split('@')[-1]!r}: MariaDB support is not built in this version; "
        "use sqlite:///path"
    )
