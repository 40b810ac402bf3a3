"""The mesos-dns configuration of the DNS beside each master, with mesos-dns's defaults.

Field names and defaults follow mesos-dns's ``configuration-parameters.md``; two differ
on purpose and say why: ``externalon`` is false (the kit never forwards a query off the
machine: names outside the domain are refused) and the DNS port is 8053, not 53 (no
privileged port). Durations are real-cluster seconds; the node scales them.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

#: What ``GET /v1/version`` reports: the mesos-dns release whose behaviour is reproduced.
VERSION = "v0.6.0"
URL = "https://github.com/mesosphere/mesos-dns"


def _fqdn(name: str) -> str:
    return name.rstrip(".") + "."


@dataclass
class DnsConfig:
    """One mesos-dns configuration (``config.json``)."""

    masters: list[str] = field(default_factory=list)  # "host:port" of every master, in order
    listener: str = "0.0.0.0"
    port: int = 53
    http_listener: str = "0.0.0.0"
    http_port: int = 8123
    domain: str = "mesos"
    refresh_seconds: int = 60
    state_timeout_seconds: int = 300
    ttl: int = 60
    timeout: int = 5
    resolvers: list[str] = field(default_factory=list)
    external_on: bool = False
    dns_on: bool = True
    http_on: bool = True
    recurse_on: bool = True
    enforce_rfc952: bool = False
    enumeration_on: bool = True
    srv_record_default_weight: int = 1
    soa_mname: str = "ns1.mesos"
    soa_rname: str = "root.ns1.mesos"
    soa_refresh: int = 60
    soa_retry: int = 600
    soa_expire: int = 86400
    soa_minttl: int = 60
    soa_serial: int = field(default_factory=lambda: int(time.time()))
    ip_sources: list[str] = field(default_factory=lambda: ["netinfo", "mesos", "host"])

    def __post_init__(self) -> None:
        # As mesos-dns's initSOA: FQDNs, and "root@ns1.mesos" written as "root.ns1.mesos.".
        self.domain = self.domain.lower().strip(".")
        self.soa_mname = _fqdn(self.soa_mname)
        self.soa_rname = _fqdn(self.soa_rname.replace("@", "."))

    @property
    def zone(self) -> str:
        """The domain as a fully qualified name (``mesos.``)."""
        return self.domain + "."

    def to_json(self) -> dict[str, Any]:
        """``GET /v1/config``: mesos-dns's ``Config`` as it encodes it.

        The keys of the documented example (``Email`` and ``Mname`` are the older names of
        ``SOARname`` and ``SOAMname``, kept for clients of that shape) plus the current ones.
        """
        return {
            "Masters": list(self.masters),
            "Zk": "",
            "RefreshSeconds": self.refresh_seconds,
            "TTL": self.ttl,
            "Port": self.port,
            "Domain": self.domain,
            "Resolvers": list(self.resolvers),
            "Timeout": self.timeout,
            "Email": self.soa_rname,
            "Mname": self.soa_mname,
            "Listener": self.listener,
            "HttpPort": self.http_port,
            "DnsOn": self.dns_on,
            "HttpOn": self.http_on,
            "StateTimeoutSeconds": self.state_timeout_seconds,
            "HTTPListener": self.http_listener,
            "ExternalOn": self.external_on,
            "RecurseOn": self.recurse_on,
            "EnforceRFC952": self.enforce_rfc952,
            "EnumerationOn": self.enumeration_on,
            "SRVRecordDefaultWeight": self.srv_record_default_weight,
            "SOAMname": self.soa_mname,
            "SOARname": self.soa_rname,
            "SOASerial": self.soa_serial,
            "SOARefresh": self.soa_refresh,
            "SOARetry": self.soa_retry,
            "SOAExpire": self.soa_expire,
            "SOAMinttl": self.soa_minttl,
            "IPSources": list(self.ip_sources),
        }
