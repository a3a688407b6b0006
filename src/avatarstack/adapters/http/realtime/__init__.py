"""The realtime protocol v1 over WebSocket (docs/realtime.md); the route is
``routes/realtime.py``."""
