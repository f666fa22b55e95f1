"""What the operator asked `ecigdis-ws check` for."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

# A healthy server answers each step in milliseconds; 10 s leaves room for a slow
# network and for the server's own DB_TIMEOUT_MS (3 s) before it answers UNAVAILABLE.
DEFAULT_STEP_TIMEOUT_S = 10.0

Transport = Literal["auto", "polling", "websocket"]


@dataclass(frozen=True)
class CheckOptions:
    url: str
    token: str | None = None
    conversation_id: int | None = None
    origin: str | None = None
    transport: Transport = "auto"
    ca_file: str | None = None
    timeout_s: float = DEFAULT_STEP_TIMEOUT_S
    # Why there is no token, told in the authenticate line when there is none.
    no_token_reason: str = "no token: pass --token T, or --user ID to mint one"

