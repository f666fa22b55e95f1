"""Delivery of events to rooms and sockets; the seam a Redis manager plugs into."""
