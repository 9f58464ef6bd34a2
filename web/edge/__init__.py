"""The socket edge: visitors' WebSockets (visitor.py) and the consoles' live stream (console.py).

docs/architecture.md, steps 2 and 5. One NATS connection per process (hub.py); PostgreSQL is read only to
replay what a socket missed.
"""
