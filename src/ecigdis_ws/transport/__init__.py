"""The edges: Socket.IO event handlers and HTTP routes. Validate, call one service, reply."""
