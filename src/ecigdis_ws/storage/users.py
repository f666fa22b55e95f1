"""Users: names from the tokens and when each was last online."""

from __future__ import annotations

from collections.abc import Sequence

from ecigdis_ws.clock import Clock
from ecigdis_ws.domain import UserId
from ecigdis_ws.storage.group_commit import GroupCommit
from ecigdis_ws.storage.tables import Tables


class UserStore:
    def __init__(self, tables: Tables, clock: Clock) -> None:
        self._tables = tables
        self._engine = tables.engine
        self._name_writes: GroupCommit[tuple[str, str, int], None] = GroupCommit(
            self._upsert_users, clock
        )
        self._last_seen_writes: GroupCommit[tuple[str, int], None] = GroupCommit(
            self._set_last_seen, clock
        )

    async def upsert_user(self, user_id: UserId, name: str, now_ms: int) -> None:
        # A connect storm records thousands of users: they share transactions.
        await self._name_writes.submit((str(user_id), name, now_ms))

    async def set_last_seen(self, user_id: UserId, now_ms: int) -> None:
        # A node going away, or a crowd leaving at closing time, sets thousands.
        await self._last_seen_writes.submit((str(user_id), now_ms))

    async def close(self) -> None:
        await self._name_writes.close()
        await self._last_seen_writes.close()

    async def _upsert_users(
        self, batch: Sequence[tuple[str, str, int]]
    ) -> list[Exception | None]:
        latest = {user_id: (user_id, name, now_ms) for user_id, name, now_ms in batch}
        rows = ", ".join("(?, ?, ?)" for _ in latest)
        on_conflict = self._engine.dialect.upsert("id", ["name"])
        async with self._engine.transaction() as tx:
            await tx.execute(
                self._tables.sql(
                    f"INSERT INTO {{p}}users (id, name, created_at_ms) VALUES {rows} "
                    f"{on_conflict}"
                ),
                [value for row in latest.values() for value in row],
            )
        return [None] * len(batch)

    async def _set_last_seen(self, batch: Sequence[tuple[str, int]]) -> list[Exception | None]:
        latest = dict(batch)
        async with self._engine.transaction() as tx:
            for user_id, now_ms in latest.items():
                await tx.execute(
                    self._tables.sql("UPDATE {p}users SET last_seen_ms = ? WHERE id = ?"),
                    (now_ms, user_id),
                )
        return [None] * len(batch)
