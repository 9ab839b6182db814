"""Python APIs in the spirit of Tractor's `tractor.api` (query: `tractorcli.api.query`)."""
