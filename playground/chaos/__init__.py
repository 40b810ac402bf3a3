"""Chaos: faults broken into a cluster (and, later, experiments and the monkey)."""

from playground.chaos.faults import Fault, FaultError, Faults

__all__ = ["Fault", "FaultError", "Faults"]
