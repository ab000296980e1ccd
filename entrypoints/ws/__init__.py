"""The WebSocket edge: frame protocol, one connection's lifecycle, the route handler."""
