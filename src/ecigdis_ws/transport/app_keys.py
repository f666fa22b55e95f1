"""Typed aiohttp application state."""

from __future__ import annotations

from aiohttp import web

from ecigdis_ws.cluster.setup import ClusterState
from ecigdis_ws.services.container import ChatServices, RestServices
from ecigdis_ws.settings import Settings
from ecigdis_ws.transport.drain import InFlight

SETTINGS = web.AppKey("settings", Settings)
SERVICES = web.AppKey("services", ChatServices)
REST_SERVICES = web.AppKey("rest_services", RestServices)
STARTED_AT = web.AppKey("started_at", float)
CLUSTER = web.AppKey("cluster", ClusterState)
# Socket events and REST requests in flight: one drain waits for both on SIGTERM.
IN_FLIGHT = web.AppKey("in_flight", InFlight)
