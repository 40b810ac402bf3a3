"""Chaos Toolkit target ``route``: faults on an app's edge route (latency, loss, bandwidth, reset)."""
