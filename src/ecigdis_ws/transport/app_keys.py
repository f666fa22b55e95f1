"""Typed aiohttp application state."""

from __future__ import annotations

from aiohttp import web

from ecigdis_ws.cluster.setup import ClusterState
from ecigdis_ws.services.container import ChatServices
from ecigdis_ws.services.main_site import MainSiteVerifier
from ecigdis_ws.settings import Settings
from ecigdis_ws.storage.base import Storage
from ecigdis_ws.transport.drain import InFlight

SETTINGS = web.AppKey("settings", Settings)
SERVICES = web.AppKey("services", ChatServices)
STARTED_AT = web.AppKey("started_at", float)
CLUSTER = web.AppKey("cluster", ClusterState)
# Socket events and REST requests in flight: one drain waits for both on SIGTERM.
IN_FLIGHT = web.AppKey("in_flight", InFlight)
# The resources the composition root opens, each in a cleanup_ctx of its own.
STORAGE = web.AppKey("storage", Storage)
MAIN_SITE = web.AppKey("main_site", MainSiteVerifier)  # only with AUTH_VERIFY_URL
