"""The server's resident memory: from its /metrics, or from /proc for a server without one."""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

import aiohttp

RESIDENT_METRIC = "process_resident_memory_bytes"
METRICS_TIMEOUT_S = 5.0
_VMRSS = re.compile(r"^VmRSS:\s+(\d+)\s+kB", re.MULTILINE)


@dataclass(frozen=True)
class Reading:
    bytes: int | None
    source: str  # where it came from, or why there is no figure


def proc_resident_bytes(pid: int) -> Reading:
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except OSError as exc:
        return Reading(None, f"/proc/{pid}/status: {exc.strerror}")
    match = _VMRSS.search(status)
    if match is None:
        return Reading(None, f"/proc/{pid}/status has no VmRSS")
    return Reading(int(match.group(1)) * 1024, f"/proc/{pid}/status VmRSS")


def metric_value(text: str, name: str) -> float | None:
    """The value of an unlabelled sample in Prometheus text exposition."""
    for line in text.splitlines():
        if line.startswith(name) and line[len(name):len(name) + 1] in (" ", "{"):
            try:
                return float(line.rsplit(" ", 1)[1])
            except (IndexError, ValueError):
                return None
    return None


async def metrics_resident_bytes(url: str) -> Reading:
    target = url.rstrip("/").replace("ws://", "http://", 1).replace("wss://", "https://", 1)
    target += "/metrics"
    try:
        timeout = aiohttp.ClientTimeout(total=METRICS_TIMEOUT_S)
        async with aiohttp.ClientSession(timeout=timeout) as session, session.get(
                target) as response:
            if response.status != 200:
                return Reading(None, f"GET {target}: HTTP {response.status}")
            text = await response.text()
    except (aiohttp.ClientError, OSError, TimeoutError) as exc:
        return Reading(None, f"GET {target}: {type(exc).__name__}")
    value = metric_value(text, RESIDENT_METRIC)
    if value is None:
        return Reading(None, f"{target} has no {RESIDENT_METRIC}; pass --server-pid")
    return Reading(int(value), f"{target} {RESIDENT_METRIC}")


async def resident_bytes(url: str, server_pid: int | None) -> Reading:
    if server_pid is not None:
        return proc_resident_bytes(server_pid)
    return await metrics_resident_bytes(url)
