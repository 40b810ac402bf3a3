"""Chaos Toolkit target ``cluster``: zones, the leading master, the masters' quorum."""
