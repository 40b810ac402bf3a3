"""The ``playground`` command."""

from __future__ import annotations

import os

import click

from playground import __version__
from playground.cli import app as app_cmds
from playground.cli import chaos as chaos_cmds
from playground.cli import cloud as cloud_cmds
from playground.cli import cluster as cluster_cmds
from playground.cli import edge as edge_cmds
from playground.cli import faults as fault_cmds
from playground.cli import maintenance as maintenance_cmds
from playground.cli import monitor as monitor_cmds
from playground.cli import storage as storage_cmds
from playground.cli.common import state_dir_option
from playground.cli.data import data
from playground.cli.dns import dns
from playground.cli.doctor import doctor
from playground.cli.task import task
from playground.cli.topology import topology
from playground.cli.vips import vips
from playground.cluster import statedir


@click.group(context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.version_option(__version__, prog_name="playground")
@state_dir_option
def main() -> None:
    """Stateful Playground: an embedded Mesos and Marathon cluster to break and rebuild.

    Start with `playground up`, look with `playground status`, stop with `playground down`.
    """
    # What the kit writes (state directories above all) is the user's only.
    os.umask(statedir.UMASK)


for cmd in (
    cluster_cmds.up,
    cluster_cmds.down,
    cluster_cmds.status,
    cluster_cmds.destroy,
    cluster_cmds.clean,
    cluster_cmds.logs,
    doctor,
    topology,
    task,
    app_cmds.app,
    app_cmds.deployment,
    app_cmds.queue,
    fault_cmds.break_,
    fault_cmds.faults,
    fault_cmds.heal,
    fault_cmds.rebuild,
    maintenance_cmds.drain,
    maintenance_cmds.maintenance,
    chaos_cmds.chaos,
    monitor_cmds.tickets,
    monitor_cmds.monitoring,
    storage_cmds.volume,
    storage_cmds.snapshot,
    storage_cmds.schedule,
    storage_cmds.policy,
    data,
    cloud_cmds.cloud,
    cloud_cmds.cloudsnap,
    *edge_cmds.COMMANDS,
    dns,
    vips,
):
    main.add_command(cmd)
for verb in storage_cmds.CLOUDSNAP_COMMANDS:
    cloud_cmds.cloudsnap.add_command(verb)

try:
    from playground.cli.workload import workload

    main.add_command(workload)
except ImportError:  # pragma: no cover - present once the workloads land
    pass

if __name__ == "__main__":
    main()
