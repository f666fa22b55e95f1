"""Versioned schema migrations, one logical schema for every dialect.

Each migration is a list of statements per dialect, with `{p}` standing for the
table prefix (DB_TABLE_PREFIX). Applied versions are recorded in
`{p}schema_migrations`; a migration and its record commit together, under the
engine's migration lock, so running `migrate` twice or from two processes at
once applies each version exactly once.
"""

from __future__ import annotations

from dataclasses import dataclass

from ecigdis_ws.storage.engine import DialectName


@dataclass(frozen=True)
class Migration:
    version: int
    name: str
    sqlite: tuple[str, ...]
    mysql: tuple[str, ...]

    def statements(self, dialect: DialectName, prefix: str) -> list[str]:
        chosen = {"sqlite": self.sqlite, "mysql": self.mysql}[dialect]
        return [statement.replace("{p}", prefix) for statement in chosen]


# MariaDB commits each DDL statement on its own, so a migration cut short is
# completed by running it again: its CREATE TABLEs say IF NOT EXISTS.
# utf8mb4 with utf8mb4_unicode_ci on MariaDB so 4-byte characters (emoji) round-trip.
# Identifiers and emoji are compared byte for byte (utf8mb4_bin): under
# unicode_ci "abc" = "ABC" and many emoji equal each other, which would merge
# distinct client message ids, string user ids and reactions.
_MYSQL_TABLE = "ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_unicode_ci"

MIGRATIONS: tuple[Migration, ...] = (
    Migration(
        1,
        "initial chat schema",
        sqlite=(
            """CREATE TABLE {p}users (
                id TEXT PRIMARY KEY,
                name TEXT NOT NULL,
                last_seen_ms INTEGER,
                created_at_ms INTEGER NOT NULL)""",
            """CREATE TABLE {p}conversations (
                id INTEGER PRIMARY KEY AUTOINCREMENT,
                title TEXT NOT NULL DEFAULT '',
                created_at_ms INTEGER NOT NULL)""",
            """CREATE TABLE {p}members (
                conversation_id INTEGER NOT NULL REFERENCES {p}conversations(id),
                user_id TEXT NOT NULL,
                last_read_message_id INTEGER,
                joined_at_ms INTEGER NOT NULL,
                PRIMARY KEY (conversation_id, user_id))""",
            "CREATE INDEX {p}members_by_user ON {p}members (user_id)",
            """CREATE TABLE {p}messages (
                id INTEGER PRIMARY KEY AUTOINCREMENT,
                conversation_id INTEGER NOT NULL REFERENCES {p}conversations(id),
                sender_id TEXT NOT NULL,
                sender_name TEXT NOT NULL,
                client_message_id TEXT NOT NULL,
                text TEXT NOT NULL,
                created_at_ms INTEGER NOT NULL)""",
            """CREATE UNIQUE INDEX {p}messages_by_client_id
                ON {p}messages (sender_id, client_message_id)""",
            """CREATE INDEX {p}messages_by_conversation
                ON {p}messages (conversation_id, id)""",
            """CREATE TABLE {p}reactions (
                message_id INTEGER NOT NULL REFERENCES {p}messages(id),
                user_id TEXT NOT NULL,
                emoji TEXT NOT NULL,
                created_at_ms INTEGER NOT NULL,
                PRIMARY KEY (message_id, user_id, emoji))""",
            """CREATE TABLE {p}user_preferences (
                user_id TEXT NOT NULL,
                pref_key TEXT NOT NULL,
                value TEXT NOT NULL,
                PRIMARY KEY (user_id, pref_key))""",
        ),
        mysql=(
            f"""CREATE TABLE IF NOT EXISTS {{p}}users (
                id VARCHAR(64) COLLATE utf8mb4_bin NOT NULL PRIMARY KEY,
                name VARCHAR(255) NOT NULL,
                last_seen_ms BIGINT NULL,
                created_at_ms BIGINT NOT NULL) {_MYSQL_TABLE}""",
            f"""CREATE TABLE IF NOT EXISTS {{p}}conversations (
                id BIGINT NOT NULL AUTO_INCREMENT PRIMARY KEY,
                title VARCHAR(255) NOT NULL DEFAULT '',
                created_at_ms BIGINT NOT NULL) {_MYSQL_TABLE}""",
            f"""CREATE TABLE IF NOT EXISTS {{p}}members (
                conversation_id BIGINT NOT NULL,
                user_id VARCHAR(64) COLLATE utf8mb4_bin NOT NULL,
                last_read_message_id BIGINT NULL,
                joined_at_ms BIGINT NOT NULL,
                PRIMARY KEY (conversation_id, user_id),
                KEY {{p}}members_by_user (user_id)) {_MYSQL_TABLE}""",
            f"""CREATE TABLE IF NOT EXISTS {{p}}messages (
                id BIGINT NOT NULL AUTO_INCREMENT PRIMARY KEY,
                conversation_id BIGINT NOT NULL,
                sender_id VARCHAR(64) COLLATE utf8mb4_bin NOT NULL,
                sender_name VARCHAR(255) NOT NULL,
                client_message_id VARCHAR(64) COLLATE utf8mb4_bin NOT NULL,
                text MEDIUMTEXT NOT NULL,
                created_at_ms BIGINT NOT NULL,
                UNIQUE KEY {{p}}messages_by_client_id (sender_id, client_message_id),
                KEY {{p}}messages_by_conversation (conversation_id, id)) {_MYSQL_TABLE}""",
            f"""CREATE TABLE IF NOT EXISTS {{p}}reactions (
                message_id BIGINT NOT NULL,
                user_id VARCHAR(64) COLLATE utf8mb4_bin NOT NULL,
                emoji VARCHAR(64) COLLATE utf8mb4_bin NOT NULL,
                created_at_ms BIGINT NOT NULL,
                PRIMARY KEY (message_id, user_id, emoji)) {_MYSQL_TABLE}""",
            f"""CREATE TABLE IF NOT EXISTS {{p}}user_preferences (
                user_id VARCHAR(64) COLLATE utf8mb4_bin NOT NULL,
                pref_key VARCHAR(64) COLLATE utf8mb4_bin NOT NULL,
                value TEXT NOT NULL,
                PRIMARY KEY (user_id, pref_key)) {_MYSQL_TABLE}""",
        ),
    ),
)

_NOPAD = "VARCHAR(64) CHARACTER SET utf8mb4 COLLATE utf8mb4_nopad_bin NOT NULL"

MIGRATIONS += (
    Migration(
        2,
        "ids and emoji compared without trailing-space padding",
        # utf8mb4_bin is a PAD SPACE collation: 'm1' = 'm1 ', which merged two
        # messages and matched "bob " as member "bob". SQLite compares exactly already.
        sqlite=(),
        mysql=(
            f"ALTER TABLE {{p}}users MODIFY id {_NOPAD}",
            f"ALTER TABLE {{p}}members MODIFY user_id {_NOPAD}",
            f"ALTER TABLE {{p}}messages MODIFY sender_id {_NOPAD}, "
            f"MODIFY client_message_id {_NOPAD}",
            f"ALTER TABLE {{p}}reactions MODIFY user_id {_NOPAD}, MODIFY emoji {_NOPAD}",
            f"ALTER TABLE {{p}}user_preferences MODIFY user_id {_NOPAD}, MODIFY pref_key {_NOPAD}",
        ),
    ),
)

MIGRATIONS += (
    Migration(
        3,
        "event log for the REST long-poll",
        # One row per stored message, advanced read position and reaction toggle,
        # written in the same transaction; the id is the poll cursor. A row only
        # points at what happened: the message itself is read from messages.
        sqlite=(
            """CREATE TABLE {p}events (
                id INTEGER PRIMARY KEY AUTOINCREMENT,
                conversation_id INTEGER NOT NULL,
                kind TEXT NOT NULL,
                message_id INTEGER NOT NULL,
                user_id TEXT NOT NULL,
                emoji TEXT,
                action TEXT,
                created_at_ms INTEGER NOT NULL)""",
            "CREATE INDEX {p}events_by_conversation ON {p}events (conversation_id, id)",
            "CREATE INDEX {p}events_by_time ON {p}events (created_at_ms)",
        ),
        mysql=(
            f"""CREATE TABLE IF NOT EXISTS {{p}}events (
                id BIGINT NOT NULL AUTO_INCREMENT PRIMARY KEY,
                conversation_id BIGINT NOT NULL,
                kind VARCHAR(16) COLLATE utf8mb4_bin NOT NULL,
                message_id BIGINT NOT NULL,
                user_id {_NOPAD},
                emoji VARCHAR(64) CHARACTER SET utf8mb4 COLLATE utf8mb4_nopad_bin NULL,
                action VARCHAR(8) COLLATE utf8mb4_bin NULL,
                created_at_ms BIGINT NOT NULL,
                KEY {{p}}events_by_conversation (conversation_id, id),
                KEY {{p}}events_by_time (created_at_ms)) {_MYSQL_TABLE}""",
        ),
    ),
)


def _rebuilt_without_references(
    table: str, columns: str, create: str, before_drop: tuple[str, ...] = ()
) -> tuple[str, ...]:
    """SQLite cannot drop a constraint: the table is copied into one created
    without it (`create`, for `{p}<table>_v4`), dropped, and the copy renamed."""
    return (
        create,
        f"INSERT INTO {{p}}{table}_v4 ({columns}) SELECT {columns} FROM {{p}}{table}",
        *before_drop,
        f"DROP TABLE {{p}}{table}",
        f"ALTER TABLE {{p}}{table}_v4 RENAME TO {{p}}{table}",
    )


# The AUTOINCREMENT counter of messages moves with the rows: a message id is never
# given twice, even one whose message is gone (docs/storage.md, Schema).
_KEEP_MESSAGE_SEQUENCE = (
    "DELETE FROM sqlite_sequence WHERE name = '{p}messages_v4'",
    "INSERT INTO sqlite_sequence (name, seq) "
    "SELECT '{p}messages_v4', seq FROM sqlite_sequence WHERE name = '{p}messages'",
)

MIGRATIONS += (
    Migration(
        4,
        "the same constraints on both databases: unique keys, no foreign keys",
        # MariaDB never had foreign keys; SQLite's three REFERENCES go, so both
        # engines accept and refuse the same writes (docs/storage.md, "Constraints").
        # Children first: with foreign_keys=ON, dropping a parent that still has
        # a referencing table would check every row. Indexes go with their
        # table, so they are created again under their old names.
        sqlite=(
            *_rebuilt_without_references(
                "reactions", "message_id, user_id, emoji, created_at_ms",
                """CREATE TABLE {p}reactions_v4 (
                message_id INTEGER NOT NULL,
                user_id TEXT NOT NULL,
                emoji TEXT NOT NULL,
                created_at_ms INTEGER NOT NULL,
                PRIMARY KEY (message_id, user_id, emoji))""",
            ),
            *_rebuilt_without_references(
                "messages",
                "id, conversation_id, sender_id, sender_name, client_message_id, text, "
                "created_at_ms",
                """CREATE TABLE {p}messages_v4 (
                id INTEGER PRIMARY KEY AUTOINCREMENT,
                conversation_id INTEGER NOT NULL,
                sender_id TEXT NOT NULL,
                sender_name TEXT NOT NULL,
                client_message_id TEXT NOT NULL,
                text TEXT NOT NULL,
                created_at_ms INTEGER NOT NULL)""",
                before_drop=_KEEP_MESSAGE_SEQUENCE,
            ),
            """CREATE UNIQUE INDEX {p}messages_by_client_id
                ON {p}messages (sender_id, client_message_id)""",
            """CREATE INDEX {p}messages_by_conversation
                ON {p}messages (conversation_id, id)""",
            *_rebuilt_without_references(
                "members", "conversation_id, user_id, last_read_message_id, joined_at_ms",
                """CREATE TABLE {p}members_v4 (
                conversation_id INTEGER NOT NULL,
                user_id TEXT NOT NULL,
                last_read_message_id INTEGER,
                joined_at_ms INTEGER NOT NULL,
                PRIMARY KEY (conversation_id, user_id))""",
            ),
            "CREATE INDEX {p}members_by_user ON {p}members (user_id)",
        ),
        mysql=(),
    ),
)

# The time of the read position that holds now: the newest "read" event that
# moved it there (the log has them since migration 3; older positions keep NULL).
_READ_TIMES = """SELECT conversation_id, user_id, message_id, MAX(created_at_ms) AS at_ms
    FROM {p}events WHERE kind = 'read' GROUP BY conversation_id, user_id, message_id"""

MIGRATIONS += (
    Migration(
        5,
        "the time of each member's read position",
        # History shows "Seen by" with readAt: one column beside the position it
        # dates, written by the same UPDATE, so a page reads it with the members.
        # The backfill reads the event log once (grouped), not once per member.
        sqlite=(
            "ALTER TABLE {p}members ADD COLUMN last_read_at_ms INTEGER",
            f"""UPDATE {{p}}members SET last_read_at_ms = r.at_ms FROM ({_READ_TIMES}) AS r
                WHERE r.conversation_id = {{p}}members.conversation_id
                AND r.user_id = {{p}}members.user_id
                AND r.message_id = {{p}}members.last_read_message_id""",
        ),
        mysql=(
            # (IF NOT EXISTS: a migration cut short is run again, see above.)
            "ALTER TABLE {p}members ADD COLUMN IF NOT EXISTS last_read_at_ms BIGINT NULL",
            f"""UPDATE {{p}}members m JOIN ({_READ_TIMES}) r
                ON r.conversation_id = m.conversation_id AND r.user_id = m.user_id
                AND r.message_id = m.last_read_message_id
                SET m.last_read_at_ms = r.at_ms""",
        ),
    ),
)

MIGRATIONS += (
    Migration(
        6,
        "how far the event log has been pruned",
        # One row: the highest event id deleted by retention (EVENT_LOG_RETENTION_S).
        # A poll cursor below it may have missed events: it is answered `resync`.
        sqlite=(
            """CREATE TABLE {p}event_log_pruned (
                id INTEGER PRIMARY KEY,
                through_id INTEGER NOT NULL)""",
            "INSERT INTO {p}event_log_pruned (id, through_id) VALUES (1, 0)",
        ),
        mysql=(
            f"""CREATE TABLE IF NOT EXISTS {{p}}event_log_pruned (
                id INTEGER NOT NULL PRIMARY KEY,
                through_id BIGINT NOT NULL) {_MYSQL_TABLE}""",
            # (a run cut short after the CREATE commits is completed by running again)
            "INSERT INTO {p}event_log_pruned (id, through_id) VALUES (1, 0) "
            "ON DUPLICATE KEY UPDATE id = id",
        ),
    ),
)


MIGRATIONS += (
    Migration(
        7,
        "who changed a membership, in the event log",
        # Membership rows name who acted (NULL for the server API): 'created' for
        # a REST create, 'added' / 'removed' for the server API. A nullable column
        # at the end is added in place on both engines, without copying the table.
        sqlite=("ALTER TABLE {p}events ADD COLUMN actor_id TEXT",),
        mysql=(
            "ALTER TABLE {p}events ADD COLUMN IF NOT EXISTS actor_id "
            "VARCHAR(64) CHARACTER SET utf8mb4 COLLATE utf8mb4_nopad_bin NULL",
        ),
    ),
)

# Who may run a conversation: the first member of each conversation that exists
# before roles (the earliest joined; ties all become owners) is its owner.
_FIRST_MEMBERS = """SELECT conversation_id, MIN(joined_at_ms) AS first_ms
    FROM {p}members GROUP BY conversation_id"""

MIGRATIONS += (
    Migration(
        8,
        "messages after they are sent: edits, deletions, replies, mentions, pins; roles",
        # Columns added at the end are instant on MariaDB and in place on SQLite.
        # A message keeps its text as it is now; each replaced text goes to
        # message_versions (for disputes), and a deletion erases both, leaving the
        # row as a tombstone (deleted_at_ms) that keeps the id's place. A reply
        # names its quoted message and copies nothing of it: the excerpt is read
        # from the quoted row, so it follows that message's edits and deletion.
        sqlite=(
            "ALTER TABLE {p}messages ADD COLUMN version INTEGER NOT NULL DEFAULT 1",
            "ALTER TABLE {p}messages ADD COLUMN edited_at_ms INTEGER",
            "ALTER TABLE {p}messages ADD COLUMN deleted_at_ms INTEGER",
            "ALTER TABLE {p}messages ADD COLUMN deleted_by TEXT",
            "ALTER TABLE {p}messages ADD COLUMN reply_to_id INTEGER",
            "ALTER TABLE {p}messages ADD COLUMN mentions TEXT",
            """CREATE TABLE {p}message_versions (
                message_id INTEGER NOT NULL,
                version INTEGER NOT NULL,
                text TEXT NOT NULL,
                written_at_ms INTEGER NOT NULL,
                replaced_at_ms INTEGER NOT NULL,
                PRIMARY KEY (message_id, version))""",
            """CREATE TABLE {p}pins (
                conversation_id INTEGER NOT NULL,
                message_id INTEGER NOT NULL,
                pinned_by TEXT NOT NULL,
                pinned_at_ms INTEGER NOT NULL,
                PRIMARY KEY (conversation_id, message_id))""",
            "ALTER TABLE {p}members ADD COLUMN role TEXT NOT NULL DEFAULT 'member'",
            f"""UPDATE {{p}}members SET role = 'owner' WHERE joined_at_ms = (
                SELECT f.first_ms FROM ({_FIRST_MEMBERS}) AS f
                WHERE f.conversation_id = {{p}}members.conversation_id)""",
        ),
        mysql=(
            "ALTER TABLE {p}messages ADD COLUMN IF NOT EXISTS version INT NOT NULL DEFAULT 1, "
            "ADD COLUMN IF NOT EXISTS edited_at_ms BIGINT NULL, "
            "ADD COLUMN IF NOT EXISTS deleted_at_ms BIGINT NULL, "
            f"ADD COLUMN IF NOT EXISTS deleted_by {_NOPAD.replace(' NOT NULL', ' NULL')}, "
            "ADD COLUMN IF NOT EXISTS reply_to_id BIGINT NULL, "
            "ADD COLUMN IF NOT EXISTS mentions TEXT NULL",
            f"""CREATE TABLE IF NOT EXISTS {{p}}message_versions (
                message_id BIGINT NOT NULL,
                version INT NOT NULL,
                text MEDIUMTEXT NOT NULL,
                written_at_ms BIGINT NOT NULL,
                replaced_at_ms BIGINT NOT NULL,
                PRIMARY KEY (message_id, version)) {_MYSQL_TABLE}""",
            f"""CREATE TABLE IF NOT EXISTS {{p}}pins (
                conversation_id BIGINT NOT NULL,
                message_id BIGINT NOT NULL,
                pinned_by {_NOPAD},
                pinned_at_ms BIGINT NOT NULL,
                PRIMARY KEY (conversation_id, message_id)) {_MYSQL_TABLE}""",
            "ALTER TABLE {p}members ADD COLUMN IF NOT EXISTS role "
            "VARCHAR(8) COLLATE utf8mb4_bin NOT NULL DEFAULT 'member'",
            # (run again after a cut: members made owner stay owners, no one else is)
            f"""UPDATE {{p}}members m JOIN ({_FIRST_MEMBERS}) f
                ON f.conversation_id = m.conversation_id AND f.first_ms = m.joined_at_ms
                SET m.role = 'owner'""",
        ),
    ),
)


LATEST_VERSION = MIGRATIONS[-1].version
