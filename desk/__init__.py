"""Deskbell's domain: the data model, NATS subjects, the visitor protocol and the actions on them.

Shared by `web` and `workers`; imports neither Flask nor Hypercorn.
"""

__version__ = "0.1.0"
