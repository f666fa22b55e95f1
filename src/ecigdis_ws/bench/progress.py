"""The run's progress on stderr while the bench runs."""

from __future__ import annotations

import time
from collections.abc import Mapping
from typing import Any, TextIO


class Progress:
    """A bar redrawn in place on a terminal; elsewhere a plain line every few seconds."""

    LINE_EVERY_S = 5.0

    def __init__(self, stream: TextIO, enabled: bool | None) -> None:
        self.stream = stream
        self.tty = stream.isatty() if enabled is None else enabled and stream.isatty()
        self.quiet = enabled is False
        self.stage = ""
        self.started = time.monotonic()
        self.stage_started = self.started
        self.stage_seconds: float | None = None  # the stage's expected length
        self.stage_clients: int | None = None  # or the clients it connects
        self.last_line = 0.0

    def set_stage(self, stage: str, seconds: float | None = None,
                  clients: int | None = None) -> None:
        self.stage = stage
        self.stage_started = time.monotonic()
        self.stage_seconds = seconds
        self.stage_clients = clients

    def fraction(self, totals: Mapping[str, Any]) -> float:
        if self.stage_clients:
            return float(totals["joined"] + totals["connect_failed"]) / self.stage_clients
        if self.stage_seconds:
            return (time.monotonic() - self.stage_started) / self.stage_seconds
        return 0.0

    def show(self, totals: Mapping[str, Any]) -> None:
        if self.quiet:
            return
        now = time.monotonic()
        text = (f"{self.stage:<22} {now - self.started:6.1f}s  joined {totals['joined']:,}  "
                f"sent {totals['sent']:,}  acked {totals['acked']:,}  "
                f"delivered {totals['received']:,}  errors {totals['errors']:,}")
        if totals["rate_limited"]:
            text += f"  RATE_LIMITED {totals['rate_limited']:,}!"
        if self.tty:
            width = 20
            filled = int(width * min(1.0, self.fraction(totals)))
            bar = "#" * filled + "." * (width - filled)
            self.stream.write(f"\r[{bar}] {text}\x1b[K")
            self.stream.flush()
        elif now - self.last_line >= self.LINE_EVERY_S:
            self.last_line = now
            self.stream.write(text + "\n")
            self.stream.flush()

    def done(self) -> None:
        if self.tty and not self.quiet:
            self.stream.write("\n")
            self.stream.flush()
