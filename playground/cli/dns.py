"""``playground dns NAME``: ask the cluster's DNS (mesos-dns beside the masters)."""

from __future__ import annotations

import click

from playground.cli.common import emit_json, handle_errors, json_option, state_dir, state_dir_option
from playground.client.dns import QUERY_TYPES, DnsClient, DnsReply, qualify
from playground.cluster.lifecycle import Cluster
from playground.errors import PlaygroundError


def names_hint(dns_http: str | None) -> str:
    where = f"{dns_http}/v1/enumerate" if dns_http else "<dns_http>/v1/enumerate"
    return (
        "mesos-dns names look like <task>.<framework>.mesos, e.g. web-prod.marathon.mesos "
        f"for the Marathon app /prod/web; see every name with `curl {where}`"
    )


def _dns_endpoint() -> tuple[str, str | None]:
    endpoints = Cluster(state_dir()).status()["endpoints"]
    if not endpoints.get("dns"):
        raise PlaygroundError(
            "the cluster's DNS is not running (it runs beside the masters, and no master runs)",
            hint="is the cluster up? see `playground status`",
        )
    return str(endpoints["dns"]), endpoints.get("dns_http")


def _check(reply: DnsReply, name: str, qtype: str, dns_http: str | None) -> None:
    if reply.rcode == "NXDOMAIN":
        raise PlaygroundError(
            f"{name}: no such name in the cluster's DNS (NXDOMAIN)", names_hint(dns_http)
        )
    if reply.rcode == "REFUSED":
        raise PlaygroundError(
            f"{name}: refused (REFUSED): the cluster's DNS answers only names in .mesos "
            "(and named VIPs in .l4lb.thisdcos.directory) and forwards nothing off the machine",
            hint="ask for a name ending in .mesos (or give NAME without a trailing dot)",
        )
    if reply.rcode != "NOERROR":
        raise PlaygroundError(f"{name}: the DNS answered {reply.rcode}")
    if not reply.answers and qtype not in ("SOA", "NS", "ANY"):
        hint = (
            "SRV names look like _<task>._tcp.<framework>.mesos"
            if qtype == "SRV"
            else "the name exists with other record types: try --type ANY or --type SRV"
        )
        raise PlaygroundError(f"{name}: no {qtype} records", hint=hint)


def _line(name: str, ttl: int, rtype: str, value: str) -> str:
    return f"{name:<48} {ttl:<5} {rtype:<5} {value}"


@click.command("dns")
@click.argument("name")
@click.option(
    "--type",
    "-t",
    "qtype",
    type=click.Choice(QUERY_TYPES, case_sensitive=False),
    metavar="[" + "|".join(QUERY_TYPES) + "]",
    help="Record type to ask for. Default: SRV when NAME starts with '_', else A.",
)
@click.option("--tcp", is_flag=True, help="Ask over TCP instead of UDP.")
@json_option
@state_dir_option
@handle_errors
def dns(name: str, qtype: str | None, tcp: bool, as_json: bool) -> None:
    """Ask the cluster's DNS (mesos-dns, beside the leading master) about NAME.

    Names follow mesos-dns. For the Marathon app /prod/web:

    \b
      web-prod.marathon.mesos              A    every task's address
      _web-prod._tcp.marathon.mesos        SRV  port and host name of every task
      _http._web-prod._tcp.marathon.mesos  SRV  the port named "http"
      web-prod.marathon.slave.mesos        A    the agents running it

    and for the cluster: leader.mesos, master.mesos, master0.mesos, slave.mesos,
    marathon.mesos. A named VIP ("VIP_0": "/prod/web:80") answers as
    prodweb.marathon.l4lb.thisdcos.directory (see `playground vips`).

    NAME without the domain gets .mesos appended (web-prod.marathon asks for
    web-prod.marathon.mesos); a trailing dot asks for exactly NAME, as dig does.

    Prints one line per answer (name, TTL, type, value; SRV shows priority, weight,
    port, target and the target's address) or, with --json, a JSON list. Exits 1 when
    the name does not exist (NXDOMAIN) or has no record of that type. The same answers
    come from `dig @HOST -p PORT NAME` (HOST:PORT is endpoints.dns in `playground
    status`), and from the HTTP API at endpoints.dns_http (/v1/hosts/NAME,
    /v1/services/NAME, /v1/enumerate).
    """
    qname = qualify(name)
    rtype = (qtype or ("SRV" if qname.startswith("_") else "A")).upper()
    hostport, dns_http = _dns_endpoint()
    reply = DnsClient(hostport).query(qname, rtype, tcp=tcp)
    _check(reply, qname, rtype, dns_http)
    records = reply.answers + (reply.authority if rtype in ("SOA", "NS", "ANY") else [])
    if as_json:
        out = []
        for rr in records:
            item = rr.to_json()
            if rr.target is not None:
                item["address"] = reply.address_of(rr.target)
            out.append(item)
        emit_json(out)
        return
    for rr in records:
        value = rr.value
        if rr.target is not None:
            address = reply.address_of(rr.target)
            value = f"{rr.priority} {rr.weight} {rr.port} {rr.target}" + (
                f"  ({address})" if address else ""
            )
        click.echo(_line(rr.name, rr.ttl, rr.type, value))
