"""Chaos Toolkit target ``app``: Marathon apps (the experiments' probe apps): deploy, kill, scale, judge."""
