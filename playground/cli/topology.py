"""``playground topology list|show``."""

from __future__ import annotations

import click

from playground.cli.common import emit_json, handle_errors, json_option, state_dir_option
from playground.cluster import topology as topo_mod


@click.group()
def topology() -> None:
    """The shipped topologies (nodes, zones, racks, resources)."""


@topology.command("list")
@json_option
@state_dir_option
@handle_errors
def list_(as_json: bool) -> None:
    """List the shipped topologies."""
    items = []
    for name in topo_mod.shipped():
        t = topo_mod.load(name)
        items.append({"name": name, "description": t.description, "nodes": len(t.nodes)})
    if as_json:
        emit_json(items)
        return
    for it in items:
        click.echo(f"{it['name']:<10} {it['description']}")


@topology.command()
@click.argument("name", metavar="NAME|FILE")
@json_option
@state_dir_option
@handle_errors
def show(name: str, as_json: bool) -> None:
    """Show the nodes of a topology."""
    desc = topo_mod.describe(topo_mod.load(name))
    if as_json:
        emit_json(desc)
        return
    click.echo(
        f"{desc['name']}: {desc['description']} (quorum {desc['quorum']}, masters' region {desc['region']})"
    )
    for n in desc["nodes"]:
        where = ""
        if "zone" in n:
            where = f"region {n['region']}, zone {n['zone']}" + (
                f", rack {n['rack']}" if n["rack"] else ""
            )
            where += f"  {n['resources']}"
        click.echo(f"  {n['name']:<16}{n['role']:<14}{where}")
    for net in desc.get("networks", []):
        click.echo(f"  network {net['name']}: up to {net['size']} task addresses per agent")
