"""Where the tests find the official API references they check the kit against.

A copy of the references the tests read ships in ``tests/reference/`` so the tests run
on any clean checkout: Marathon's app examples, RAML, JSON schema and event-bus page
(sources in ``tests/reference/marathon/SOURCES.md``), the Mesos endpoint pages and
marathon-lb's test fixtures (``tests/reference/marathon-lb/SOURCES.md``).
"""

from __future__ import annotations

from pathlib import Path

MARATHON = Path(__file__).resolve().parent.parent / "reference" / "marathon"
MESOS_ENDPOINTS = Path(__file__).resolve().parent.parent / "reference" / "mesos" / "endpoints"
MARATHON_LB = Path(__file__).resolve().parent.parent / "reference" / "marathon-lb"
