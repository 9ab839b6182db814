"""Compatibility tests: scripts written like studio pipeline code run against a real site.

A package, so its test modules have names of their own (compat.test_...)
next to the top-level tests."""
