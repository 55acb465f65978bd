"""Miniature stand-in of open_lth (tests only; see tests/upstream_standin/README.md)."""
