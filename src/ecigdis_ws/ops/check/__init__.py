"""`ecigdis-ws check URL`: the connection tester (the old test-connection.js).

It goes through what a browser client does, one step at a time, and prints one
line per step: ✓ or ✗, the time the step took, and on failure what went wrong
with a hint at the usual cause.

    connect        Engine.IO + Socket.IO handshake (polling, then the websocket
                   upgrade, as socket.io-client does), and the `connected` greeting
    authenticate   `authenticate { token }` after connecting, so a refused token is
                   told apart from a refused connection
    join           `conversation:join` of --conversation
    send           `message:send` to it, waiting for the ack and `message:ack`
    presence       `presence:request`, which must list the check's own user
    health         GET /health

A step ends one of four ways: passed (✓), failed (✗), skipped (-) because the
operator did not ask for it (no --conversation: join and send; no token: every
step after connect but health), or not run (-) because an earlier step it needs
failed. The exit status is 0 when no step failed, skipped steps named in the last
line; 1 when one failed. The check never picks a conversation of its own, even
where CONVERSATION_ACCESS=open would let it: its message would land in a
conversation people read, so it writes only where --conversation tells it to.

The package: options.py (what the operator asked for), steps.py (the check, step by
step, over ops/socket_client.py's client), failures.py (each failure's reason and
hint), results.py (the lines and the verdict), command.py (the CLI subcommand).
"""

from ecigdis_ws.ops.check.options import CheckOptions
from ecigdis_ws.ops.check.results import STEPS, StepResult, passed, summary
from ecigdis_ws.ops.check.steps import run_check

__all__ = ["STEPS", "CheckOptions", "StepResult", "passed", "run_check", "summary"]
