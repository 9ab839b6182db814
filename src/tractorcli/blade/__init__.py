"""Reserved for later issues (see design.md)."""
