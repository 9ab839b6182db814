"""Tractor's `tractor.base`: only `EngineClient`, which some pipeline code uses directly."""
