"""Tractor's `tractor.api`: `author` and `query` (see the `tractor` package)."""
