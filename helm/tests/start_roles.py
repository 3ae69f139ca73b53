"""Starts a role of the built binary with the settings its rendered pod would get, on loopback.

It owns the translation of a rendered pod into a local process: the Secret's values decoded,
its files written under a temporary directory in place of the mount, the ConfigMap and env
variables set, the broker and Redis pointed at a closed loopback port (nothing leaves the
machine, nothing is connected to). The binary checks its whole configuration before it connects,
so a process that answers /live, and /ready with 503 while it waits for Redis, took every
setting the chart gave it. It must not need a cluster, RabbitMQ or Redis.
"""

from __future__ import annotations

import base64
import os
import signal
import socket
import subprocess
import tempfile
import time
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path

from check_rendered import Obj, Report, configmap_env, deployment, of_kind, pod_spec

# A loopback port nothing listens on: connections are refused at once.
CLOSED = "127.0.0.1:1"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def http_status(url: str) -> int | None:
    try:
        with urllib.request.urlopen(url, timeout=2) as resp:
            return int(resp.status)
    except urllib.error.HTTPError as e:
        return int(e.code)
    except OSError:
        return None


def pod_environment(objs: list[Obj], role: str, tmp: str) -> tuple[list[str], dict[str, str]]:
    """The container's arguments and environment, its secret files written under `tmp`."""
    pod = pod_spec(deployment(objs, role))
    c = pod["containers"][0]
    secrets = {s["metadata"]["name"]: s.get("data", {}) for s in of_kind(objs, "Secret")}
    volumes = {v["name"]: v for v in pod["volumes"]}
    moved = {}
    for m in c["volumeMounts"]:
        src = volumes[m["name"]].get("secret")
        for item in (src or {}).get("items", []):
            path = Path(tmp + m["mountPath"]) / item["path"]
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(base64.b64decode(secrets[src["secretName"]][item["key"]]))
            moved[f"{m['mountPath']}/{item['path']}"] = str(path)
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin")}
    env.update(configmap_env(objs, c))
    env.pop("OTEL_EXPORTER_OTLP_ENDPOINT", None)
    for e in c["env"]:
        if "value" in e:
            env[e["name"]] = moved.get(e["value"], e["value"])
        else:
            ref = e["valueFrom"]["secretKeyRef"]
            url = base64.b64decode(secrets[ref["name"]][ref["key"]]).decode()
            parts = urllib.parse.urlsplit(url)
            env[e["name"]] = parts._replace(netloc=f"{parts.username or ''}:x@{CLOSED}").geturl()
    return c["args"], env


def start_role(r: Report, name: str, binary: str, objs: list[Obj], role: str) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        args, env = pod_environment(objs, role, tmp)
        admin = free_port()
        env["MAILFERRY_ADMIN_LISTEN"] = f"127.0.0.1:{admin}"
        if "MAILFERRY_LISTEN" in env:
            env["MAILFERRY_LISTEN"] = f"127.0.0.1:{free_port()}"
        proc = subprocess.Popen(
            [binary, *args],
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        live = None
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline and proc.poll() is None and live != 200:
            time.sleep(0.2)
            live = http_status(f"http://127.0.0.1:{admin}/live")
        ready = http_status(f"http://127.0.0.1:{admin}/ready")
        exited = proc.poll()
        # A second interrupt stops at once; the first would wait for a Redis connect attempt.
        for _ in range(2):
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
                time.sleep(0.2)
        try:
            out, _ = proc.communicate(timeout=5)
        except subprocess.TimeoutExpired:
            proc.kill()
            out, _ = proc.communicate()
        r.check(
            exited is None and live == 200 and ready == 503,
            f"{name}: `mailferry {role}` takes its pod's settings (/live 200, /ready 503)",
            f"exit {exited}, /live {live}, /ready {ready}: {out.strip()[-600:]}",
        )
