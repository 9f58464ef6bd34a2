"""Reads: functions returning select() statements; the caller executes them in a tenant session."""
