"""Chaos Toolkit target ``node``: break, reboot, partition, drain, heal and rebuild one node."""
