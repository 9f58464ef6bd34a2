"""Writes: do_<verb>_<noun>() functions that change the database and return what callers publish."""
