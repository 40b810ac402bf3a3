"""Stateful Playground: an embedded Mesos/Marathon cluster for learning to run stateful services."""

from typing import Any

__version__ = "0.1.0"

#: The Mesos release whose HTTP APIs the embedded master and agents reproduce.
MESOS_VERSION = "1.11.0"


def discover(discover_system: bool = True) -> dict[str, Any]:
    """Chaos Toolkit's discovery entry point (``chaos discover stateful-playground``).

    Imported lazily: node processes import this package and must not load chaostoolkit.
    """
    from playground.chaos import discover as chaos_discover

    return chaos_discover(discover_system)
