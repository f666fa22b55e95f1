"""Conversations and their members."""

from __future__ import annotations

from collections.abc import Sequence

from ecigdis_ws.domain import ROLES, ChangedBy, Member, ReadPosition, Role, UserId
from ecigdis_ws.storage.base import ConversationFull, LastOwner
from ecigdis_ws.storage.engine import Cursorish
from ecigdis_ws.storage.event_log import EventLog
from ecigdis_ws.storage.tables import Tables

# Members per INSERT: a create writes its members in one statement (1,000 INSERTs
# held the single SQLite writer ~110 ms); 3 parameters a row keeps a statement
# under SQLite's bound of 32,766 parameters.
MEMBER_ROWS_PER_INSERT = 5000


class ConversationStore:
    """A change given `changed_by` is also written to the event log, in its own
    transaction, for the long-poll of each member it concerns; without it (tools,
    the demo's Lobby, open access) the log is left alone."""

    def __init__(self, tables: Tables, events: EventLog) -> None:
        self._tables = tables
        self._engine = tables.engine
        self._events = events

    async def create_conversation(
        self, title: str, member_ids: Sequence[UserId], now_ms: int,
        changed_by: ChangedBy | None = None,
    ) -> int:
        async with self._engine.transaction() as tx:
            _, conversation_id = await tx.execute(
                self._tables.sql(
                    "INSERT INTO {p}conversations (title, created_at_ms) VALUES (?, ?)"
                ),
                (title, now_ms),
            )
            assert conversation_id is not None
            await self._insert_members(tx, conversation_id, member_ids, now_ms)
            if changed_by is not None:
                await self._events.append_created(tx, conversation_id, changed_by, now_ms)
                if changed_by.user_id is not None:  # the creator owns it
                    await self._set_role(tx, conversation_id, changed_by.user_id, "owner")
        return conversation_id

    async def ensure_conversation(self, conversation_id: int, now_ms: int) -> None:
        await self._engine.execute(
            self._tables.insert_once("conversations", "id, title, created_at_ms", "?, '', ?"),
            (conversation_id, now_ms),
        )

    async def add_member(
        self, conversation_id: int, user_id: UserId, now_ms: int, max_members: int | None = None,
        changed_by: ChangedBy | None = None,
    ) -> bool:
        """True when the user was not a member (only then is a change logged)."""
        async with self._engine.transaction() as tx:
            if max_members is not None:
                await self._require_room(tx, conversation_id, user_id, max_members)
            added = await self._insert_members(tx, conversation_id, [user_id], now_ms) > 0
            if added and changed_by is not None:
                await self._events.append_membership(
                    tx, "added", conversation_id, user_id, changed_by, now_ms
                )
            return added

    async def add_members(
        self, conversation_id: int, user_ids: Sequence[UserId], now_ms: int
    ) -> int:
        async with self._engine.transaction() as tx:
            return await self._insert_members(tx, conversation_id, user_ids, now_ms)

    async def remove_member(
        self, conversation_id: int, user_id: UserId, changed_by: ChangedBy | None = None,
        now_ms: int = 0,
    ) -> bool:
        """True when the user was a member. A change is logged either way: the
        main site may have deleted the row itself and call this to tell the user.
        The last owner leaving hands the role on, in the same transaction."""
        async with self._engine.transaction() as tx:
            removed, _ = await tx.execute(
                self._tables.sql(
                    "DELETE FROM {p}members WHERE conversation_id = ? AND user_id = ?"
                ),
                (conversation_id, str(user_id)),
            )
            if removed:
                await self._keep_an_owner(tx, conversation_id)
            if changed_by is not None:
                await self._events.append_membership(
                    tx, "removed", conversation_id, user_id, changed_by, now_ms
                )
        return removed > 0

    async def rename_conversation(
        self, conversation_id: int, title: str, changed_by: UserId, now_ms: int
    ) -> bool:
        """True when the title changed; the change is in the event log (kind
        "renamed") in the same transaction, for the members' long-polls."""
        async with self._engine.transaction() as tx:
            changed, _ = await tx.execute(
                self._tables.sql(
                    "UPDATE {p}conversations SET title = ? WHERE id = ? AND title <> ?"
                ),
                (title, conversation_id, title),
            )
            if changed:
                await self._events.append_event(
                    tx, "renamed", conversation_id, 0, changed_by, now_ms
                )
        return changed > 0

    async def role_of(self, conversation_id: int, user_id: UserId) -> Role | None:
        """The member's role, None for one who is not a member. Outside the writer:
        a role given is seen by every read that starts after its commit."""
        row = await self._engine.fetch_one(
            self._tables.sql(
                "SELECT role FROM {p}members WHERE conversation_id = ? AND user_id = ?"
            ),
            (conversation_id, str(user_id)),
        )
        return None if row is None else _role(row[0])

    async def members(self, conversation_id: int) -> list[Member]:
        """Every member with their name, role and read position, in user-id order,
        in one query (a join answers with all of it)."""
        rows = await self._engine.fetch_all(
            self._tables.sql(
                "SELECT mb.user_id, u.name, mb.role, mb.last_read_message_id, "
                "mb.last_read_at_ms FROM {p}members mb "
                "LEFT JOIN {p}users u ON u.id = mb.user_id "
                "WHERE mb.conversation_id = ? ORDER BY mb.user_id"
            ),
            (conversation_id,),
        )
        members = []
        for user, name, role, read_id, read_at in rows:
            user_id = self._tables.user_id(user)
            members.append(Member(user_id, "" if name is None else str(name), _role(role),
                                  ReadPosition(user_id, None if read_id is None else int(read_id),
                                               None if read_at is None else int(read_at))))
        return members

    async def set_role(self, conversation_id: int, user_id: UserId, role: Role) -> bool:
        """True when the member's role changed; LastOwner (nothing written) when it
        would leave a conversation that has an owner without one."""
        async with self._engine.transaction() as tx:
            if role != "owner":
                row = await tx.fetch_one(
                    self._tables.sql(
                        "SELECT SUM(CASE WHEN role = 'owner' THEN 1 ELSE 0 END), "
                        "SUM(CASE WHEN role = 'owner' AND user_id = ? THEN 1 ELSE 0 END) "
                        "FROM {p}members WHERE conversation_id = ?"
                    ),
                    (str(user_id), conversation_id),
                )
                if row is not None and row[1] and int(row[0]) == 1:
                    raise LastOwner()
            return await self._set_role(tx, conversation_id, user_id, role) > 0

    async def _keep_an_owner(self, tx: Cursorish, conversation_id: int) -> None:
        """Once its last owner has gone, a conversation with members is owned by its
        longest-standing admin, or else its longest-standing member (so is one made
        by tools or open access, which had none, once a member leaves it)."""
        row = await tx.fetch_one(
            self._tables.sql(
                "SELECT SUM(CASE WHEN role = 'owner' THEN 1 ELSE 0 END), COUNT(*) "
                "FROM {p}members WHERE conversation_id = ?"
            ),
            (conversation_id,),
        )
        if row is None or not row[1] or (row[0] is not None and int(row[0]) > 0):
            return
        heir = await tx.fetch_one(
            self._tables.sql(
                "SELECT user_id FROM {p}members WHERE conversation_id = ? "
                "ORDER BY CASE WHEN role = 'admin' THEN 0 ELSE 1 END, joined_at_ms, user_id "
                "LIMIT 1"
            ),
            (conversation_id,),
        )
        assert heir is not None
        await self._set_role(tx, conversation_id, self._tables.user_id(heir[0]), "owner")

    async def _set_role(
        self, tx: Cursorish, conversation_id: int, user_id: UserId, role: Role
    ) -> int:
        changed, _ = await tx.execute(
            self._tables.sql(
                "UPDATE {p}members SET role = ? WHERE conversation_id = ? AND user_id = ?"
            ),
            (role, conversation_id, str(user_id)),
        )
        return changed

    async def conversation_title(self, conversation_id: int) -> str | None:
        """None when there is no such conversation."""
        row = await self._engine.fetch_one(
            self._tables.sql("SELECT title FROM {p}conversations WHERE id = ?"),
            (conversation_id,),
        )
        return None if row is None else str(row[0])

    async def is_member(self, conversation_id: int, user_id: UserId) -> bool:
        row = await self._engine.fetch_one(
            self._tables.sql(
                "SELECT 1 FROM {p}members WHERE conversation_id = ? AND user_id = ?"
            ),
            (conversation_id, str(user_id)),
        )
        return row is not None

    async def conversation_exists(self, conversation_id: int) -> bool:
        row = await self._engine.fetch_one(
            self._tables.sql("SELECT 1 FROM {p}conversations WHERE id = ?"), (conversation_id,)
        )
        return row is not None

    async def oldest_conversation_titled(self, title: str) -> int | None:
        # Only the demo's sign-in asks, in development: a scan of conversations is fine.
        row = await self._engine.fetch_one(
            self._tables.sql("SELECT MIN(id) FROM {p}conversations WHERE title = ?"), (title,)
        )
        return None if row is None or row[0] is None else int(row[0])

    async def member_ids(self, conversation_id: int) -> list[UserId]:
        rows = await self._engine.fetch_all(
            self._tables.sql(
                "SELECT user_id FROM {p}members WHERE conversation_id = ? ORDER BY user_id"
            ),
            (conversation_id,),
        )
        return [self._tables.user_id(row[0]) for row in rows]

    async def contact_ids(self, user_id: UserId) -> list[UserId]:
        rows = await self._engine.fetch_all(
            self._tables.sql(
                "SELECT DISTINCT theirs.user_id FROM {p}members mine "
                "JOIN {p}members theirs ON theirs.conversation_id = mine.conversation_id "
                "WHERE mine.user_id = ? AND theirs.user_id <> ?"
            ),
            (str(user_id), str(user_id)),
        )
        return [self._tables.user_id(row[0]) for row in rows]

    async def conversation_ids_of(self, user_id: UserId) -> set[int]:
        rows = await self._engine.fetch_all(
            self._tables.sql("SELECT conversation_id FROM {p}members WHERE user_id = ?"),
            (str(user_id),),
        )
        return {int(row[0]) for row in rows}

    async def _insert_members(
        self, tx: Cursorish, conversation_id: int, user_ids: Sequence[UserId], now_ms: int
    ) -> int:
        """Members in one INSERT (per MEMBER_ROWS_PER_INSERT); existing ones are
        skipped. Returns how many were not members before."""
        ids = list(dict.fromkeys(str(user_id) for user_id in user_ids))
        inserted = 0
        for start in range(0, len(ids), MEMBER_ROWS_PER_INSERT):
            chunk = ids[start:start + MEMBER_ROWS_PER_INSERT]
            count, _ = await tx.execute(
                self._tables.insert_once(
                    "members", "conversation_id, user_id, joined_at_ms", rows=len(chunk)
                ),
                [value for user_id in chunk for value in (conversation_id, user_id, now_ms)],
            )
            inserted += count
        return inserted

    async def _require_room(
        self, tx: Cursorish, conversation_id: int, user_id: UserId, max_members: int
    ) -> None:
        """Raise ConversationFull unless the user is a member already or one more fits.

        Counted inside the adding transaction, after the dialect's lock on the
        conversation's row (SQLite's one writer needs none), so concurrent adds
        to one conversation count one after another and cannot overshoot together."""
        lock = self._engine.dialect.lock_for_update(
            self._tables.sql("SELECT id FROM {p}conversations WHERE id = ?")
        )
        if lock is not None:
            await tx.fetch_one(lock, (conversation_id,))
        row = await tx.fetch_one(
            self._tables.sql(
                "SELECT COUNT(*), SUM(CASE WHEN user_id = ? THEN 1 ELSE 0 END) "
                "FROM {p}members WHERE conversation_id = ?"
            ),
            (str(user_id), conversation_id),
        )
        assert row is not None
        if not row[1] and int(row[0]) >= max_members:
            raise ConversationFull(max_members)


def _role(raw: object) -> Role:
    role = str(raw)
    assert role in ROLES, f"unknown role {role!r}"
    return role
