"""The socket edge: visitors' WebSockets (visitor.py) and the consoles' live stream (console.py).

docs/architecture.md, steps 2 and 5. The edge's NATS connection is hub.py's (Flask's views publish through
their own, desk/bus.py's SyncBus); PostgreSQL is read only to replay what a socket missed.
"""
