"""Chaos: faults broken into a cluster, and the Chaos Toolkit extension built on them.

``discover`` is the extension's entry point (Chaos Toolkit's convention); the targets are
the subpackages ``node``, ``cluster``, ``marathon`` and ``app`` (``<target>/actions.py``,
``<target>/probes.py``); the shipped experiments are in ``catalogue/``.
"""

from playground.chaos.discovery import discover
from playground.chaos.faults import Fault, FaultError, Faults

__all__ = ["Fault", "FaultError", "Faults", "discover"]
