"""Where the DNS beside each master listens, in both addressing modes."""

from __future__ import annotations

import socket

from playground.cluster import addresses
from playground.cluster.topology import load


def test_per_ip_mode_uses_mesos_dns_ports_on_every_master() -> None:
    """Per-IP: every master's DNS is on its own address, port 8053, HTTP API on 8123."""
    assert addresses.dns_ports({"mode": "per-ip", "block": 7}, 0) == (8053, 8123)
    assert addresses.dns_ports({"mode": "per-ip", "block": 7}, 2) == (8053, 8123)


def test_shared_ip_mode_gives_each_master_two_ports_above_the_node_ports() -> None:
    """Shared-IP: 20000 + 100*(block%100) + 50 + 2i and the next, clear of node API ports."""
    assert addresses.dns_ports({"mode": "shared-ip", "block": 7}, 0) == (20750, 20751)
    assert addresses.dns_ports({"mode": "shared-ip", "block": 107}, 2) == (20754, 20755)
    topo = load("ha")
    plan = addresses.plan(topo, "shared-ip", 7)
    node_ports = {a.port for a in plan.values()}
    dns = {
        p
        for i in range(len(topo.masters))
        for p in addresses.dns_ports({"mode": "shared-ip", "block": 7}, i)
    }
    assert not node_ports & dns


def test_taken_dns_ports_are_reported() -> None:
    """A process holding a master's DNS port (UDP only) makes that port count as taken."""
    topo = load("default")
    host = "127.77.253.99"  # no node of any cluster has host number 99
    plan = {topo.masters[0].name: addresses.NodeAddress(host, 5050)}
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind((host, addresses.DNS_PORT))
        assert addresses.dns_ports_taken(topo, plan, "per-ip", 253) == [f"{host}:8053"]
    assert addresses.dns_ports_taken(topo, plan, "per-ip", 253) == []
