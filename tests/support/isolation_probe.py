"""Run as a task: try to read the cluster's secrets and use its platform services.

Prints one JSON line per attempt, ``{"what", "kind", "outcome", "detail"}``, where the
outcome is ``denied`` (no permission), ``read`` (it worked: a breach), an HTTP status, or
``unreachable``. Targets come from the environment (``PROBE_*``); standard library only.
"""

from __future__ import annotations

import json
import os
import urllib.error
import urllib.request


def say(what: str, kind: str, outcome: object, detail: str = "") -> None:
    print(json.dumps({"what": what, "kind": kind, "outcome": outcome, "detail": detail}))


def read(what: str, path: str) -> None:
    try:
        if os.path.isdir(path):
            names = os.listdir(path)
            say(what, "file", "read", f"{len(names)} entries")
        else:
            with open(path, "rb") as fh:
                say(what, "file", "read", f"{len(fh.read())} bytes")
    except PermissionError as exc:
        say(what, "file", "denied", str(exc))
    except OSError as exc:
        say(what, "file", "error", str(exc))


def call(what: str, method: str, url: str, body: object = None, token: str | None = None) -> None:
    data = None if body is None else json.dumps(body).encode()
    req = urllib.request.Request(url, data=data, method=method)
    req.add_header("Content-Type", "application/json")
    if token is not None:
        req.add_header("Authorization", f"token={token}")
    try:
        with urllib.request.urlopen(req, timeout=5) as resp:
            say(what, "http", resp.status, resp.read(200).decode(errors="replace"))
    except urllib.error.HTTPError as exc:
        say(what, "http", exc.code, exc.read(300).decode(errors="replace"))
    except OSError as exc:
        say(what, "http", "unreachable", str(exc))


def main() -> None:
    state = os.environ["PLAYGROUND_STATE_DIR"]
    say("uid", "id", os.getuid())
    read("secret store", os.path.join(state, "secrets"))
    read("platform token", os.path.join(state, "secrets", "platform-token"))
    read("backup key", os.path.join(state, "secrets", "cloudsnap-key"))
    read("cluster.json", os.path.join(state, "cluster.json"))
    read("events", os.path.join(state, "events.jsonl"))
    read("state dir", state)
    read("agent log", os.path.join(state, "nodes", os.environ["PROBE_AGENT"], "node.log"))
    coord = os.environ["PROBE_COORDINATOR"]
    storage = os.environ["PROBE_STORAGE"]
    agent = os.environ["PROBE_AGENT_URL"]
    victim = os.environ["PROBE_VICTIM"]
    call("coordinator election", "GET", f"{coord}/v1/election/mesos")
    call("coordinator registry", "GET", f"{coord}/v1/kv/mesos/registry")
    call("coordinator write", "PUT", f"{coord}/v1/kv/mesos/registry", {"agents": []})
    call("coordinator guessed token", "GET", f"{coord}/v1/election/mesos", token="guess")
    call("storage list", "GET", f"{storage}/v1/volumes")
    call("storage create", "POST", f"{storage}/v1/volumes", {"name": "evil", "size": 1})
    call("storage delete", "DELETE", f"{storage}/v1/volumes/{victim}")
    call("storage sync other volume", "POST", f"{storage}/v1/volumes/{victim}/sync")
    call("storage guessed token", "DELETE", f"{storage}/v1/volumes/{victim}", token="guess")
    launch = {"task": {"task_id": {"value": "evil"}, "command": {"value": "id", "user": "root"}}}
    call("agent launch as root", "POST", f"{agent}/slave(1)/mesos.internal.RunTaskMessage", launch)
    master = os.environ["PROBE_MASTER"]
    call("master forged update", "POST", f"{master}/master/mesos.internal.StatusUpdateMessage", {})
    call("agent shutdown", "POST", f"{agent}/slave(1)/mesos.internal.ShutdownMessage", {})
    print("probe done", flush=True)


if __name__ == "__main__":
    main()
