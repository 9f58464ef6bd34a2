"""Canned responses: per tenant (admins) and per agent, found by `/shortcut` in the composer."""

from __future__ import annotations
