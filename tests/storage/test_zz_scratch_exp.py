import asyncio, time
from pathlib import Path
from urllib.parse import urlsplit
import aiohttp
import pytest
from ecigdis_ws.storage.mariadb import MariaDbTarget
from tests.backends import unique_prefix, connect
from tests.support import running_server
from tests.transport.conftest import room
from tests.tcp_proxy import TcpProxy

ENV = {"DB_TIMEOUT_MS": "500", "DB_CONNECT_TIMEOUT_MS": "500", "DB_POOL_MIN": "1",
       "RATE_LIMIT_MESSAGES": "0", "RATE_LIMIT_EVENTS": "0", "LOG_LEVEL": "info"}

async def timed(coro):
    t = time.monotonic()
    try:
        r = await coro
    except Exception as e:
        r = repr(e)
    return r, round(time.monotonic() - t, 3)

@pytest.mark.parametrize("fault", ["delay015", "delay03", "stall_insert", "stall_commit", "stall_begin", "kill", "blackhole", "refuse", "delay06"])
async def test_exp(mariadb_url: str, tmp_path: Path, fault: str) -> None:
    db = MariaDbTarget.from_url(mariadb_url).database
    prefix = unique_prefix()
    async with TcpProxy() as proxy:
        env = {**ENV, "DATABASE_URL": f"mysql://root@127.0.0.1:{proxy.port}/{db}", "DB_TABLE_PREFIX": prefix}
        async with running_server(tmp_path, **env) as server:
            conv, (alice, bob) = await room(server, 1, 2)
            print(fault, "ok send", await timed(alice.call("message:send", {"conversationId": conv, "text": "a", "messageId": "m0"})))
            if fault.startswith("delay"):
                proxy.delay(int(fault[5:]) / 100)
            elif fault == "stall_insert":
                proxy.stall(b"INSERT INTO " + prefix.encode() + b"messages")
            elif fault == "stall_commit":
                proxy.stall(b"COMMIT", forward_trigger=True)
            elif fault == "stall_begin":
                proxy.stall(b"BEGIN", forward_trigger=True)
            elif fault == "kill":
                ports = proxy.upstream_local_ports()
                def kill():
                    c = connect(mariadb_url)
                    with c.cursor() as cur:
                        cur.execute("SELECT ID, HOST FROM information_schema.PROCESSLIST")
                        ids = [i for i, h in cur.fetchall() if h and h.rsplit(":",1)[-1].isdigit() and int(h.rsplit(":",1)[-1]) in ports]
                        for i in ids:
                            cur.execute(f"KILL {i}")
                    c.close(); return ids
                print("killed", await asyncio.to_thread(kill), ports)
            else:
                await proxy.cut(fault)
            for i in range(1, 4):
                print(fault, "send", i, await timed(alice.call("message:send", {"conversationId": conv, "text": "b", "messageId": f"m{i}"})))
            async with aiohttp.ClientSession() as http:
                async def h():
                    async with http.get(server.url + "/health") as r:
                        return r.status, await r.json()
                print(fault, "health", await timed(h()))
            await proxy.restore()
            print(fault, "after restore", await timed(alice.call("message:send", {"conversationId": conv, "text": "c", "messageId": "m9"})))
            c = connect(mariadb_url, db)
            with c.cursor() as cur:
                cur.execute(f"SELECT client_message_id FROM {prefix}messages ORDER BY id")
                print(fault, "stored", cur.fetchall())
            c.close()
