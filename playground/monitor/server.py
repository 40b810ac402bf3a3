"""The ``monitor`` node: scrape, evaluate the alert rules, keep the incident log, remediate.

Every scrape interval (:data:`SCRAPE_INTERVAL` real-cluster seconds, scaled, never
under :data:`WALL_FLOOR` wall seconds) the monitor scrapes the cluster
(:mod:`playground.monitor.scrape`), evaluates the rules of ``STATE/monitor/rules.yml``
(reloaded when the file changes), opens a ticket for every alert that starts firing and
resolves it when the alert resolves, and runs the remediations that rules ask for.

HTTP API (on the node's address, port 9090):
    GET /health                 ``{"status": "ok", ...}`` (also says when the rules file is bad)
    GET /v1/tickets[?open=true] the incident log (a JSON list)
    GET /v1/alerts              pending and firing alerts
    GET /v1/rules               the loaded rules, their state, the rules file and its last error
    GET /v1/targets             what was scraped, up or down, and why
    GET /metrics                Prometheus text: everything scraped plus ``playground_monitor_*``
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import time
from collections import deque
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import aiohttp
from aiohttp import web

from playground.cluster.httpserver import json_response, run_app, supervise
from playground.cluster.statedir import StateDir
from playground.cluster.timescale import TimeScale
from playground.monitor import exposition, promql
from playground.monitor import rules as rules_mod
from playground.monitor.alerts import Changes, Engine
from playground.monitor.remediation import MAX_ATTEMPTS, run_action
from playground.monitor.scrape import Node, Round, Scraper
from playground.monitor.tickets import (
    IncidentLog,
    TicketLogError,
    detected_after,
    epoch,
    iso,
    read_faults,
    tickets_path,
)

if TYPE_CHECKING:
    from playground.cluster.node import NodeContext

log = logging.getLogger("playground.monitor")

#: Real-cluster seconds between scrapes (and rule evaluations).
SCRAPE_INTERVAL = 1.0
#: No scrape round more often than this (wall seconds).
WALL_FLOOR = 0.25
#: I/O timeout of one scrape request (wall seconds; I/O timeouts are not scaled).
SCRAPE_TIMEOUT = 2.0

Runner = Callable[[Path, str, str, str], Awaitable[tuple[bool, str]]]


class History:
    """Recent points of the series that range selectors of the rules read."""

    def __init__(self) -> None:
        self.selectors: list[promql.VectorSelector] = []
        self.keep = 0.0  # wall seconds
        self.points: dict[promql.LabelKey, deque[tuple[float, float]]] = {}

    def configure(self, rules: list[rules_mod.Rule], to_wall: Callable[[float], float]) -> None:
        sels: list[promql.VectorSelector] = []
        longest = 0.0
        for r in rules:
            rng = promql.max_range(r.expr)
            if rng > 0:
                longest = max(longest, rng)
                sels += promql.range_selectors(r.expr)
        self.selectors = sels
        self.keep = to_wall(longest) * 1.5 + 1.0 if sels else 0.0

    def add(self, samples: list[promql.Sample], now: float) -> None:
        if not self.selectors:
            self.points.clear()
            return
        for s in samples:
            if any(sel.matches(s.labels) for sel in self.selectors):
                self.points.setdefault(promql.key_of(s.labels), deque()).append((now, s.value))
        cutoff = now - self.keep
        for k in list(self.points):
            dq = self.points[k]
            while dq and dq[0][0] < cutoff:
                dq.popleft()
            if not dq:
                del self.points[k]

    def query(self, sel: promql.VectorSelector, window: float, now: float) -> list[promql.Series]:
        out = []
        for k, dq in self.points.items():
            labels = dict(k)
            if sel.matches(labels):
                pts = [(t, v) for t, v in dq if t > now - window]
                if pts:
                    out.append(promql.Series(labels, pts))
        return out


class Monitor:
    """The monitor's state and its loop (independent of HTTP, for tests).

    Args:
        state: the cluster's state directory.
        name: the monitor node's name (the timeline's source).
        nodes: the nodes to scrape.
        ts: the cluster's time scale.
        fetch: HTTP GET (``url -> (status, body)``).
        clock: wall clock.
        runner: runs a remediation action (default: the helper process).
    """

    def __init__(
        self,
        state: StateDir,
        name: str,
        nodes: list[Node],
        ts: TimeScale,
        fetch: Callable[[str], Awaitable[tuple[int, str]]],
        clock: Callable[[], float] = time.time,
        runner: Runner | None = None,
    ) -> None:
        self.state = state
        self.name = name
        self.nodes = nodes
        self.node_names = [n.name for n in nodes]
        self.ts = ts
        self.clock = clock
        self.runner: Runner = runner or (lambda s, a, n, src: run_action(s, a, n, src))
        self.rules_path = rules_mod.ensure_rules_file(state.root)
        self.rules_error: str | None = None
        self.rules_loaded_at: float | None = None
        self._rules_stamp: tuple[int, int] | None = None
        self.engine = Engine([])
        self.history = History()
        try:
            self.incidents = IncidentLog(tickets_path(state.root))
        except TicketLogError as exc:
            log.error("%s", exc)
            self.incidents = IncidentLog(tickets_path(state.root))
        self.check_rules()
        self.engine.restore(self.incidents.restored_alerts())
        self._interrupted_actions()
        self.scraper = Scraper(nodes, fetch, ts.scale, clock)
        self.last_round: Round | None = None
        self.rounds = 0
        self.evaluations = 0
        self.remediations = {"succeeded": 0, "failed": 0}
        self.running: dict[str, asyncio.Task[None]] = {}
        self._saved_alerts: set[tuple[str, str]] = {
            (a.fingerprint, a.state) for a in self.engine.alerts()
        }

    # ---- time -------------------------------------------------------------------------
    def to_wall(self, seconds: float) -> float:
        """Wall seconds of a real-cluster duration of a rule (``for``, ``after``, windows)."""
        return self.ts.wall(seconds, 0.0)

    @property
    def interval(self) -> float:
        return self.ts.wall(SCRAPE_INTERVAL, WALL_FLOOR)

    # ---- rules ------------------------------------------------------------------------
    def check_rules(self) -> None:
        """Load the rules file if it changed since the last look (cheap: one stat)."""
        try:
            st = os.stat(self.rules_path)
            stamp: tuple[int, int] | None = (st.st_mtime_ns, st.st_size)
        except OSError:
            stamp = None
        if stamp == self._rules_stamp and self._rules_stamp is not None:
            return
        self._rules_stamp = stamp
        try:
            rules = rules_mod.load(self.rules_path)
        except rules_mod.RuleFileError as exc:
            msg = str(exc)
            if msg != self.rules_error:
                log.error("rules file rejected, keeping the previous rules: %s", msg)
                self.state.record_event(
                    "monitor.rules_rejected", file=str(self.rules_path), error=msg
                )
            self.rules_error = msg
            return
        self.engine.replace_rules(rules)
        self.history.configure(rules, self.to_wall)
        self.rules_error = None
        self.rules_loaded_at = self.clock()
        log.info("loaded %d rule(s) from %s", len(rules), self.rules_path)
        self.state.record_event(
            "monitor.rules_loaded",
            file=str(self.rules_path),
            rules=[r.name for r in rules],
        )

    # ---- one round --------------------------------------------------------------------
    async def tick(self) -> Changes:
        """Scrape once, evaluate the rules, update tickets, start due remediations."""
        self.check_rules()
        rnd = await self.scraper.round()
        now = self.clock()
        self.last_round = rnd
        self.rounds += 1
        self.history.add(rnd.samples, now)
        changes = self.engine.evaluate(
            rnd.samples,
            now,
            self.to_wall,
            lambda sel, window: self.history.query(sel, window, now),
        )
        self.evaluations += 1
        self.apply(changes, now)
        self.remediate(now)
        return changes

    def apply(self, changes: Changes, now: float) -> None:
        """Open and resolve tickets for what changed; record it on the timeline; persist."""
        dirty = False
        faults: list[dict[str, Any]] | None = None
        for a in changes.fired:
            rule = self.engine.rule(a.rule)
            severity = rule.severity if rule else a.labels.get("severity", "warning")
            self.state.record_event(
                "alert.firing",
                rule=a.rule,
                subject=a.subject,
                severity=severity,
                labels=a.labels,
                active_at=iso(a.active_at),
            )
            if faults is None:
                faults = read_faults(self.state.root)
            after = detected_after(faults, a.subject, self.node_names, a.active_at, now)
            ticket, new = self.incidents.open_ticket(a, severity, now, after)
            if new:
                dirty = True
                log.warning("ticket %s: %s %s", ticket["id"], a.rule, a.subject)
                self.state.record_event(
                    "ticket.opened",
                    ticket=ticket["id"],
                    rule=a.rule,
                    subject=a.subject,
                    severity=severity,
                    detected_after_s=after,
                )
        for a in changes.resolved:
            self.state.record_event(
                "alert.resolved", rule=a.rule, subject=a.subject, labels=a.labels
            )
            dirty |= self._resolve(self.incidents.resolve(a.fingerprint, now))
        live = {a.fingerprint for a in self.engine.alerts() if a.state == "firing"}
        for t in self.incidents.resolve_orphans(live, now):
            dirty |= self._resolve(t)
        states = {(a.fingerprint, a.state) for a in self.engine.alerts()}
        if dirty or states != self._saved_alerts:
            self.incidents.save(self.engine.alerts())
            self._saved_alerts = states

    def _resolve(self, ticket: dict[str, Any] | None) -> bool:
        if ticket is None:
            return False
        log.info("ticket %s resolved (%s %s)", ticket["id"], ticket["rule"], ticket["subject"])
        self.state.record_event(
            "ticket.resolved", ticket=ticket["id"], rule=ticket["rule"], subject=ticket["subject"]
        )
        return True

    # ---- remediation ------------------------------------------------------------------
    def _interrupted_actions(self) -> None:
        changed = False
        for t in self.incidents.tickets:
            for act in t.get("actions", []):
                if act.get("result") == "running":
                    act["result"] = "failed"
                    act["detail"] = "interrupted: the monitor stopped while the action ran"
                    act["finished_at"] = iso(self.clock())
                    changed = True
        if changed:
            self.incidents.save()

    def remediate(self, now: float) -> None:
        """Start the remediations that are due (at most one running per ticket)."""
        for a in self.engine.alerts():
            if a.state != "firing" or a.fired_at is None:
                continue
            rule = self.engine.rule(a.rule)
            if rule is None or rule.remediation is None or not rule.remediation.enabled:
                continue
            ticket = self.incidents.ticket_for(a)
            if ticket is None or ticket.get("resolved_at") or ticket["id"] in self.running:
                continue
            actions = ticket.setdefault("actions", [])
            if len(actions) >= MAX_ATTEMPTS or any(x.get("result") == "succeeded" for x in actions):
                continue
            since = a.fired_at
            if actions:
                since = max(since, epoch(actions[-1].get("finished_at") or iso(since)))
            if now - since < self.to_wall(rule.remediation.after_s):
                continue
            action = {
                "action": rule.remediation.action,
                "target": a.subject,
                "started_at": iso(now),
                "finished_at": None,
                "result": "running",
                "detail": "",
            }
            actions.append(action)
            self.incidents.save()
            self.state.record_event(
                "remediation.started",
                ticket=ticket["id"],
                rule=a.rule,
                action=action["action"],
                target=a.subject,
            )
            if a.subject not in self.node_names:
                self._finish(ticket, action, False, f"{a.subject!r} is not a node of the cluster")
                continue
            self.running[ticket["id"]] = asyncio.ensure_future(self._run(ticket, action))

    async def _run(self, ticket: dict[str, Any], action: dict[str, Any]) -> None:
        try:
            ok, detail = await self.runner(
                self.state.root, action["action"], action["target"], self.name
            )
        except Exception as exc:  # the runner itself failed: say so on the ticket
            ok, detail = False, f"{type(exc).__name__}: {exc}"
        finally:
            self.running.pop(ticket["id"], None)
        self._finish(ticket, action, ok, detail)

    def _finish(
        self, ticket: dict[str, Any], action: dict[str, Any], ok: bool, detail: str
    ) -> None:
        action.update(
            result="succeeded" if ok else "failed", detail=detail, finished_at=iso(self.clock())
        )
        self.remediations["succeeded" if ok else "failed"] += 1
        (log.info if ok else log.warning)(
            "remediation %s %s for ticket %s: %s",
            action["action"],
            action["target"],
            ticket["id"],
            detail,
        )
        self.state.record_event(
            "remediation.succeeded" if ok else "remediation.failed",
            ticket=ticket["id"],
            rule=ticket["rule"],
            action=action["action"],
            target=action["target"],
            detail=detail,
        )
        self.incidents.save()

    # ---- views ------------------------------------------------------------------------
    def own_samples(self) -> list[promql.Sample]:
        n = promql.NAME
        alerts = self.engine.alerts()
        tickets = self.incidents.tickets
        out = [
            promql.Sample({n: "playground_monitor_scrape_rounds_total"}, float(self.rounds)),
            promql.Sample(
                {n: "playground_monitor_rule_evaluations_total"}, float(self.evaluations)
            ),
            promql.Sample({n: "playground_monitor_scrape_interval_seconds"}, self.interval),
            promql.Sample({n: "playground_monitor_rules"}, float(len(self.engine.states))),
            promql.Sample(
                {n: "playground_monitor_rules_last_reload_successful"},
                0.0 if self.rules_error else 1.0,
            ),
            promql.Sample(
                {n: "playground_monitor_tickets", "state": "open"},
                float(sum(1 for t in tickets if not t.get("resolved_at"))),
            ),
            promql.Sample(
                {n: "playground_monitor_tickets", "state": "resolved"},
                float(sum(1 for t in tickets if t.get("resolved_at"))),
            ),
        ]
        for state in ("pending", "firing"):
            out.append(
                promql.Sample(
                    {n: "playground_monitor_alerts", "state": state},
                    float(sum(1 for a in alerts if a.state == state)),
                )
            )
        for result, count in sorted(self.remediations.items()):
            out.append(
                promql.Sample(
                    {n: "playground_monitor_remediations_total", "result": result}, float(count)
                )
            )
        if self.last_round is not None:
            out.append(
                promql.Sample(
                    {n: "playground_monitor_scrape_round_duration_seconds"},
                    round(self.last_round.duration, 6),
                )
            )
        return out

    def metrics_text(self) -> str:
        samples = list(self.last_round.samples) if self.last_round else []
        return exposition.render(samples + self.own_samples())

    def alerts_view(self) -> list[dict[str, Any]]:
        return [
            {**a.to_dict(), "rule": a.rule, "subject": a.subject}
            for a in sorted(self.engine.alerts(), key=lambda x: (x.active_at, x.rule))
        ]

    def rules_view(self) -> dict[str, Any]:
        rules = []
        for st in self.engine.states:
            d = st.rule.to_dict()
            d.update(
                state=st.state if st.rule.kind == "alert" else None,
                health="err" if st.last_error else "ok" if st.last_eval else "unknown",
                lastError=st.last_error or "",
                alerts=len(st.active),
            )
            rules.append(d)
        return {
            "file": str(self.rules_path),
            "loaded_at": iso(self.rules_loaded_at) if self.rules_loaded_at else None,
            "error": self.rules_error,
            "rules": rules,
        }

    def health_view(self) -> dict[str, Any]:
        return {
            "status": "ok",
            "node": self.name,
            "rules_error": self.rules_error,
            "scrape_interval_s": self.interval,
            "last_round": iso(self.last_round.started) if self.last_round else None,
            "open_tickets": sum(1 for t in self.incidents.tickets if not t.get("resolved_at")),
        }

    # ---- the loop ---------------------------------------------------------------------
    async def run(self, stop: asyncio.Event) -> None:
        while not stop.is_set():
            t0 = time.monotonic()
            try:
                await self.tick()
            except Exception:
                log.exception("monitor round failed")
            wait = max(self.interval - (time.monotonic() - t0), 0.0)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), wait)
        for task in list(self.running.values()):
            task.cancel()


class Api:
    """The monitor's HTTP API."""

    def __init__(self, monitor: Monitor) -> None:
        self.m = monitor

    async def health(self, request: web.Request) -> web.Response:
        return json_response(self.m.health_view())

    async def tickets(self, request: web.Request) -> web.Response:
        open_only = request.query.get("open", "").lower() in ("1", "true", "yes")
        return json_response(self.m.incidents.listing(open_only))

    async def alerts(self, request: web.Request) -> web.Response:
        return json_response(self.m.alerts_view())

    async def rules(self, request: web.Request) -> web.Response:
        return json_response(self.m.rules_view())

    async def targets(self, request: web.Request) -> web.Response:
        rnd = self.m.last_round
        return json_response([t.to_dict() for t in rnd.targets] if rnd else [])

    async def metrics(self, request: web.Request) -> web.Response:
        return web.Response(
            body=self.m.metrics_text().encode(),
            headers={"Content-Type": exposition.CONTENT_TYPE},
        )

    def application(self) -> web.Application:
        app = web.Application()
        r = app.router
        r.add_get("/health", self.health)
        r.add_get("/v1/tickets", self.tickets)
        r.add_get("/v1/alerts", self.alerts)
        r.add_get("/v1/rules", self.rules)
        r.add_get("/v1/targets", self.targets)
        r.add_get("/metrics", self.metrics)
        return app


def cluster_nodes(ctx: NodeContext) -> list[Node]:
    """The nodes the monitor scrapes (every node but itself)."""
    out = []
    for spec in ctx.topology.nodes:
        if spec.name == ctx.name:
            continue
        a = ctx.address_of(spec.name)
        out.append(Node(spec.name, spec.role, a.url, a.hostport))
    return out


async def serve(ctx: NodeContext) -> int:
    from playground.mesos.transport import Transport

    transport = Transport(ctx.name, ctx.token)

    async def fetch(url: str) -> tuple[int, str]:
        async with transport.session.get(
            url, timeout=aiohttp.ClientTimeout(total=SCRAPE_TIMEOUT), allow_redirects=False
        ) as resp:
            return resp.status, await resp.text()

    monitor = Monitor(ctx.state, ctx.name, cluster_nodes(ctx), ctx.time, fetch)
    try:
        await asyncio.gather(
            run_app(Api(monitor).application(), ctx.address.host, ctx.address.port, ctx.stop),
            supervise("monitor", lambda: monitor.run(ctx.stop), ctx.stop),
        )
    finally:
        await transport.close()
    return 0
