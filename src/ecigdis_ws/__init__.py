"""ecigdis-ws: the staff portal's real-time chat server (Socket.IO v5 over aiohttp)."""

__version__ = "0.1.0"
