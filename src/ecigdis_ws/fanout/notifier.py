"""Who must know what this node delivered (the role of Synapse's notifier).

The fan-out manager tells the notifier of every event it delivers to sockets here,
whichever node emitted it; listeners subscribe at the wiring point (the REST
long-poll's server API wakes its polls and applies membership changes). A listener
runs inside the delivery: it must not block or raise.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

Listener = Callable[[str, Any, str | list[str] | None], None]


class DeliveryNotifier:
    def __init__(self) -> None:
        self._listeners: list[Listener] = []

    def subscribe(self, listener: Listener) -> Callable[[], None]:
        """Tell `listener` (event, data, room) of each delivery; returns the unsubscribe."""
        self._listeners.append(listener)
        return lambda: self._listeners.remove(listener)

    def delivered(self, event: str, data: Any, room: str | list[str] | None) -> None:
        for listener in self._listeners:
            listener(event, data, room)
