"""JetStream consumers, one per file; `python -m workers [NAME ...]` runs them (all by default)."""
