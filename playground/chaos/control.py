"""The ``probe-app`` Chaos Toolkit control: an experiment's own probe app, before and after.

Declared at the top of every catalogue experiment::

    "controls": [{"name": "probe-app", "provider": {"type": "python",
        "module": "playground.chaos.control",
        "arguments": {"app_id": "${app_id}", "instances": "${instances}",
                      "constraints": [["hostname", "UNIQUE"]], "needs": {"masters": 3}}}}]

Before the experiment it checks what the experiment needs of the cluster (``needs``:
``masters``; a cluster without them interrupts the run with the reason) and deploys the
probe app (the ``web`` workload, with the control's ``labels``: ``HAPROXY_GROUP`` puts it on
the edge), waiting a bounded time for it to be healthy -- the
steady-state hypothesis then judges it, so a probe app that cannot become healthy fails
the experiment before its method. After the experiment, if the rollbacks did not run
(chaostoolkit's default rollback strategy skips them for failed and interrupted runs), it
heals what the run broke and removes the probe app, unless the strategy is ``never``.
Dry runs touch nothing.
"""

from __future__ import annotations

import logging
from typing import Any

from playground.chaos import extension as ext
from playground.errors import PlaygroundError

logger = logging.getLogger("chaostoolkit")


def _interrupt(message: str) -> Exception:
    from chaoslib.exceptions import InterruptExecution

    return InterruptExecution(message)


def check_needs(
    needs: dict[str, Any] | None, configuration: dict[str, Any] | None, title: str = ""
) -> str | None:
    """Why the cluster cannot run an experiment with these ``needs`` (None: it can)."""
    want = int((needs or {}).get("masters", 0))
    if not want:
        return None
    have = sum(n.role == "master" for n in ext.backend(configuration).nodes())
    if have >= want:
        return None
    topo = (needs or {}).get("topology", "ha")
    return (
        f"{title or 'this experiment'} needs at least {want} masters (the `{topo}` topology: "
        f"`playground up --topology {topo}`); this cluster has {have}"
    )


def before_experiment_control(
    context: dict[str, Any],
    configuration: dict[str, Any] | None = None,
    app_id: str = "",
    instances: int = 2,
    constraints: list[list[str]] | None = None,
    needs: dict[str, Any] | None = None,
    within: float = 300,
    labels: dict[str, str] | None = None,
    **_: Any,
) -> None:
    ext.reset()
    if context.get("dry"):
        return
    try:
        reason = check_needs(needs, configuration, str(context.get("title") or ""))
    except PlaygroundError as exc:
        raise _interrupt(f"{exc}" + (f" ({exc.hint})" if exc.hint else "")) from None
    if reason:
        logger.critical(reason)
        raise _interrupt(reason)
    if not app_id:
        return
    from playground.chaos.app.actions import deploy_app

    try:
        st = deploy_app(
            app_id,
            instances,
            constraints,
            within=within,
            labels=labels,
            configuration=configuration,
        )
    except PlaygroundError as exc:
        msg = f"cannot deploy the probe app {app_id}: {exc}"
        logger.critical(msg)
        raise _interrupt(msg) from None
    if not st.get("at_rest"):
        logger.warning(
            "the probe app %s is not healthy after %ss: %s",
            app_id,
            st.get("healthy_after_seconds"),
            st,
        )


def after_experiment_control(
    context: dict[str, Any],
    state: dict[str, Any] | None = None,
    configuration: dict[str, Any] | None = None,
    settings: dict[str, Any] | None = None,
    app_id: str = "",
    **_: Any,
) -> None:
    if context.get("dry"):
        return
    strategy = ((settings or {}).get("runtime") or {}).get("rollbacks", {}).get("strategy")
    if (state or {}).get("rollbacks") or strategy == "never":
        return
    from playground.chaos.app.actions import remove_app
    from playground.chaos.node.actions import heal_node

    try:
        if ext.remembered():
            healed = heal_node(configuration=configuration)
            logger.warning("rollbacks did not run: healed %s", [f["target"] for f in healed])
        if app_id and remove_app(app_id, configuration=configuration):
            logger.warning("rollbacks did not run: removed the probe app %s", app_id)
    except PlaygroundError as exc:
        logger.error("cleaning up after the experiment failed: %s", exc)
