"""Stateful Playground: an embedded Mesos/Marathon cluster for learning to run stateful services."""

__version__ = "0.1.0"

#: The Mesos release whose HTTP APIs the embedded master and agents reproduce.
MESOS_VERSION = "1.11.0"
