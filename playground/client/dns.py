"""Clients of the cluster's DNS (mesos-dns beside each master): DNS questions and its HTTP API."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any
from urllib.parse import quote

import httpx
from dnslib import QTYPE, RCODE, DNSError, DNSRecord

from playground.client.errors import ClientError

#: The record types ``playground dns`` asks for.
QUERY_TYPES = ("A", "AAAA", "SRV", "ANY", "SOA", "NS")


class DnsQueryError(ClientError):
    """The DNS did not answer, or answered with an error code."""


@dataclass
class DnsRecord:
    """One resource record of an answer."""

    name: str
    type: str
    ttl: int
    value: str
    #: SRV only: priority, weight, port and target (the task's canonical name).
    priority: int | None = None
    weight: int | None = None
    port: int | None = None
    target: str | None = None

    def to_json(self) -> dict[str, Any]:
        return {k: v for k, v in asdict(self).items() if v is not None}


@dataclass
class DnsReply:
    """A reply: its response code (``NOERROR``, ``NXDOMAIN``, ``REFUSED``, ...) and sections."""

    rcode: str
    answers: list[DnsRecord] = field(default_factory=list)
    authority: list[DnsRecord] = field(default_factory=list)
    additional: list[DnsRecord] = field(default_factory=list)

    def address_of(self, target: str) -> str | None:
        """The address the additional section gives for an SRV target."""
        for rr in self.additional:
            if rr.name == target and rr.type in ("A", "AAAA"):
                return rr.value
        return None


#: The zone of named VIPs (answered by the same DNS; see playground.l4lb).
L4LB_DOMAIN = "l4lb.thisdcos.directory"


def qualify(name: str, domain: str = "mesos") -> str:
    """The name to ask for: ``name`` with ``.<domain>`` appended unless it ends with it.

    A trailing dot means "exactly this name", as in ``dig``. Named VIPs
    (``<name>.marathon.l4lb.thisdcos.directory``) are asked for as they are.
    """
    if name.endswith("."):
        return name
    for zone in (domain, L4LB_DOMAIN):
        if name.lower() == zone or name.lower().endswith("." + zone):
            return name + "."
    return f"{name}.{domain}."


def _record(rr: Any) -> DnsRecord:
    rtype = QTYPE.get(rr.rtype)
    out = DnsRecord(str(rr.rname), str(rtype), int(rr.ttl), str(rr.rdata))
    if rr.rtype == QTYPE.SRV:
        out.priority, out.weight = int(rr.rdata.priority), int(rr.rdata.weight)
        out.port, out.target = int(rr.rdata.port), str(rr.rdata.target)
    return out


class DnsClient:
    """Asks one DNS server (``host:port``) questions over UDP or TCP."""

    def __init__(self, hostport: str, timeout: float = 2.0) -> None:
        host, _, port = hostport.rpartition(":")
        self.host, self.port = host, int(port)
        self.timeout = timeout

    def query(self, name: str, qtype: str = "A", tcp: bool = False) -> DnsReply:
        """Ask for ``name`` (fully qualified) and ``qtype``; return the parsed reply."""
        q = DNSRecord.question(name, qtype.upper())
        try:
            data = q.send(self.host, self.port, tcp=tcp, timeout=self.timeout)
            reply = DNSRecord.parse(data)
        except TimeoutError as exc:
            raise DnsQueryError(
                f"no answer from the DNS at {self.host}:{self.port} within {self.timeout:g}s",
                hint="is the cluster up? see `playground status` (endpoints.dns)",
            ) from exc
        except OSError as exc:
            raise DnsQueryError(
                f"cannot reach the DNS at {self.host}:{self.port}: {exc}",
                hint="is the cluster up? see `playground status` (endpoints.dns)",
            ) from exc
        except DNSError as exc:
            raise DnsQueryError(f"unreadable answer from {self.host}:{self.port}: {exc}") from exc
        return DnsReply(
            str(RCODE.get(reply.header.rcode)),
            [_record(rr) for rr in reply.rr],
            [_record(rr) for rr in reply.auth],
            [_record(rr) for rr in reply.ar],
        )


class DnsHttpClient:
    """mesos-dns's HTTP API: ``/v1/version``, ``/v1/config``, ``/v1/hosts``, ``/v1/services``,
    ``/v1/enumerate``."""

    def __init__(self, url: str, timeout: float = 5.0) -> None:
        self.url = url.rstrip("/")
        self.http = httpx.Client(timeout=timeout)

    def close(self) -> None:
        self.http.close()

    def __enter__(self) -> DnsHttpClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _get(self, path: str) -> Any:
        try:
            r = self.http.get(f"{self.url}{path}")
        except httpx.HTTPError as exc:
            raise ClientError(
                f"{self.url}{path}: {exc}", hint="is the cluster up? see `playground status`"
            ) from exc
        if r.status_code != 200:
            raise ClientError(f"{self.url}{path}: HTTP {r.status_code}: {r.text}", r.status_code)
        return r.json()

    def version(self) -> dict[str, Any]:
        return dict(self._get("/v1/version"))

    def config(self) -> dict[str, Any]:
        return dict(self._get("/v1/config"))

    def hosts(self, host: str) -> list[dict[str, str]]:
        return list(self._get(f"/v1/hosts/{quote(host, safe='')}"))

    def services(self, service: str) -> list[dict[str, str]]:
        return list(self._get(f"/v1/services/{quote(service, safe='')}"))

    def enumerate(self) -> dict[str, Any]:
        return dict(self._get("/v1/enumerate"))
