"""Chaos Toolkit target ``marathon``: the Marathon node (crash, restart, readiness)."""
