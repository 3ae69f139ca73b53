"""The chart's invariants, checked on the objects one values file renders to.

It owns what must hold whatever the values: workers outlive their drain, containers run
non-root on a read-only root, one autoscaler at most, KEDA reads the right queue through the
Secret, secrets appear only in the Secret, every file a variable names is mounted, every
variable is one the binary reads, and each role's placement and extra volumes are rendered as
its values give them. It renders nothing and starts nothing itself.
"""

from __future__ import annotations

import re
import urllib.parse
from typing import Any, Iterator

import yaml

Obj = dict[str, Any]

# Variables the binary reads from the environment itself rather than through a flag, so they
# are not in `--help`.
ENV_NOT_IN_HELP = {
    "MAILFERRY_AMQP_URL",
    "MAILFERRY_REDIS_URL",
    "MAILFERRY_SECRET_KEY_FILE",
    "MAILFERRY_NAMESPACE",
    "MAILFERRY_API_TOKENS_FILE",
    "MAILFERRY_LOG",
}


class Report:
    """Counts checks; a failed check is printed and the run goes on."""

    def __init__(self) -> None:
        self.passed = 0
        self.failed = 0

    def check(self, ok: bool, what: str, detail: str = "") -> None:
        if ok:
            self.passed += 1
        else:
            self.failed += 1
            print(f"FAIL {what}" + (f": {detail}" if detail else ""), flush=True)


def objects(manifests: dict[str, str]) -> list[Obj]:
    """The objects of rendered templates (NOTES.txt is text, not objects)."""
    out: list[Obj] = []
    for path, text in sorted(manifests.items()):
        if not path.endswith("NOTES.txt"):
            out.extend(doc for doc in yaml.safe_load_all(text) if doc)
    return out


def of_kind(objs: list[Obj], kind: str) -> list[Obj]:
    return [o for o in objs if o.get("kind") == kind]


def deployment(objs: list[Obj], role: str) -> Obj:
    found = [
        d
        for d in of_kind(objs, "Deployment")
        if d["metadata"]["labels"].get("app.kubernetes.io/component") == role
    ]
    assert len(found) == 1, f"expected one {role} Deployment, found {len(found)}"
    return found[0]


def pod_spec(d: Obj) -> Obj:
    return d["spec"]["template"]["spec"]


def configmap_env(objs: list[Obj], container: Obj) -> dict[str, str]:
    """The variables a container gets from its envFrom ConfigMaps."""
    env: dict[str, str] = {}
    by_name = {c["metadata"]["name"]: c for c in of_kind(objs, "ConfigMap")}
    for ref in container.get("envFrom", []):
        env.update(by_name[ref["configMapRef"]["name"]].get("data", {}))
    return env


def containers(obj: Obj) -> Iterator[tuple[Obj, Obj]]:
    """(pod spec, container) for every container of a workload object."""
    spec = obj.get("spec", {}).get("template", {}).get("spec")
    if spec is not None:
        for c in spec.get("initContainers", []) + spec.get("containers", []):
            yield spec, c


def secret_strings(values: dict[str, Any]) -> list[str]:
    """The secret values of a values file, and the parts of them that must not leak alone."""
    s = values.get("secrets", {})
    found: list[str] = []
    for line in str(s.get("fleetKey", "")).splitlines():
        fields = line.split()
        if len(fields) == 2 and not line.lstrip().startswith("#"):
            found.append(fields[1])
    for line in str(s.get("apiTokens", "")).splitlines():
        if line.strip() and not line.lstrip().startswith("#"):
            found.append(line.strip())
    for key in ("amqpUrl", "redisUrl"):
        url = str(s.get(key, "")).strip()
        if url:
            found.append(url)
            password = urllib.parse.urlsplit(url).password
            if password:
                found.append(password)
    return found


def check_grace(r: Report, name: str, objs: list[Obj]) -> None:
    """The kubelet must not SIGKILL a worker before its drain ends."""
    worker = deployment(objs, "worker")
    drain = int(configmap_env(objs, pod_spec(worker)["containers"][0])["MAILFERRY_DRAIN_TIMEOUT"])
    grace = pod_spec(worker)["terminationGracePeriodSeconds"]
    r.check(grace > drain, f"{name}: worker grace {grace} s > drain {drain} s")


def check_container_security(r: Report, name: str, objs: list[Obj]) -> None:
    for obj in objs:
        for pod, c in containers(obj):
            where = f"{name}: {obj['kind']} {obj['metadata']['name']} container {c['name']}"
            psc, csc = pod.get("securityContext", {}), c.get("securityContext", {})
            user = csc.get("runAsUser", psc.get("runAsUser"))
            seccomp = csc.get("seccompProfile", psc.get("seccompProfile", {}))
            r.check(csc.get("runAsNonRoot", psc.get("runAsNonRoot")) is True, f"{where}: non-root")
            r.check(isinstance(user, int) and user > 0, f"{where}: numeric user", str(user))
            r.check(csc.get("readOnlyRootFilesystem") is True, f"{where}: read-only root fs")
            r.check(csc.get("allowPrivilegeEscalation") is False, f"{where}: no escalation")
            r.check(csc.get("capabilities", {}).get("drop") == ["ALL"], f"{where}: drops ALL")
            r.check(seccomp.get("type") == "RuntimeDefault", f"{where}: seccomp RuntimeDefault")
            live = c.get("livenessProbe", {}).get("httpGet", {})
            ready = c.get("readinessProbe", {}).get("httpGet", {})
            r.check(
                (live.get("path"), ready.get("path")) == ("/live", "/ready")
                and live.get("port") == ready.get("port") == "admin",
                f"{where}: probes /live and /ready on the admin port",
                f"{live} {ready}",
            )
            res = c.get("resources", {})
            r.check(
                bool(res.get("requests")) and bool(res.get("limits", {}).get("memory")),
                f"{where}: resource requests and a memory limit",
            )


def check_autoscaling(r: Report, name: str, values: dict[str, Any], objs: list[Obj]) -> None:
    """KEDA makes its own HPA: never both. A scaled Deployment leaves replicas to its scaler."""
    worker = deployment(objs, "worker")
    keda, hpa = of_kind(objs, "ScaledObject"), of_kind(objs, "HorizontalPodAutoscaler")
    w = values.get("worker", {})
    keda_on = w.get("keda", {}).get("enabled", False)
    hpa_on = w.get("autoscaling", {}).get("enabled", True) and not keda_on
    r.check(not (keda and hpa), f"{name}: no HPA beside the KEDA ScaledObject")
    r.check((bool(keda), bool(hpa)) == (keda_on, hpa_on), f"{name}: the autoscaler asked for")
    r.check(
        ("replicas" in worker["spec"]) == (not (keda or hpa)),
        f"{name}: worker replicas set only when no autoscaler owns them",
    )
    if not keda:
        return
    wc = pod_spec(worker)["containers"][0]
    namespace = configmap_env(objs, wc)["MAILFERRY_NAMESPACE"]
    trigger = keda[0]["spec"]["triggers"][0]
    auths = {t["metadata"]["name"]: t for t in of_kind(objs, "TriggerAuthentication")}
    auth = auths.get(trigger.get("authenticationRef", {}).get("name"), {})
    host = [t for t in auth.get("spec", {}).get("secretTargetRef", []) if t["parameter"] == "host"]
    amqp = next(e for e in wc["env"] if e["name"] == "MAILFERRY_AMQP_URL")
    r.check(
        trigger["type"] == "rabbitmq"
        and trigger["metadata"].get("queueName") == f"{namespace}.tasks"
        and trigger["metadata"].get("mode") == "QueueLength"
        and "host" not in trigger["metadata"],
        f"{name}: KEDA trigger on {namespace}.tasks by QueueLength, no inline host",
        str(trigger),
    )
    r.check(
        len(host) == 1
        and {"name": host[0]["name"], "key": host[0]["key"]} == amqp["valueFrom"]["secretKeyRef"],
        f"{name}: the TriggerAuthentication's host is the workers' AMQP URL",
        f"{host} vs {amqp}",
    )
    r.check(
        keda[0]["spec"]["scaleTargetRef"]["name"] == worker["metadata"]["name"],
        f"{name}: the ScaledObject scales the worker Deployment",
    )


def check_availability(r: Report, name: str, values: dict[str, Any], objs: list[Obj]) -> None:
    """ServiceMonitor reach, disruption budgets, and the coordinator's rollout strategy."""
    for mon in of_kind(objs, "ServiceMonitor"):
        r.check(
            all(e.get("path") == "/metrics" and e.get("port") == "admin"
                for e in mon["spec"]["endpoints"]),
            f"{name}: the ServiceMonitor scrapes /metrics on the admin port",
        )
        sel = mon["spec"]["selector"]["matchLabels"]
        roles = {
            s["metadata"]["labels"].get("app.kubernetes.io/component")
            for s in of_kind(objs, "Service")
            if all(s["metadata"]["labels"].get(k) == v for k, v in sel.items())
            and any(p["name"] == "admin" for p in s["spec"]["ports"])
        }
        r.check(roles == {"coordinator", "worker"}, f"{name}: the ServiceMonitor finds both roles")
    c = values.get("coordinator", {})
    budgets = {
        p["metadata"]["labels"]["app.kubernetes.io/component"]
        for p in of_kind(objs, "PodDisruptionBudget")
    }
    wanted = c.get("podDisruptionBudget", {}).get("enabled", False) and c.get("replicas", 1) > 1
    r.check(("coordinator" in budgets) == wanted, f"{name}: coordinator PDB as asked, replicas > 1")
    r.check(
        deployment(objs, "coordinator")["spec"]["strategy"]["type"] == "Recreate",
        f"{name}: coordinators are replaced with Recreate (one Ready pod: rolling would hang)",
    )


def check_secrets(
    r: Report, name: str, values: dict[str, Any], manifests: dict[str, str], objs: list[Obj]
) -> None:
    """Secret values only in the Secret: not in a ConfigMap, env value, annotation or NOTES."""
    existing = values.get("secrets", {}).get("existingSecret")
    leaks = secret_strings(values)
    r.check(bool(leaks) != bool(existing), f"{name}: secret values to look for")
    leaked = []
    for path, text in manifests.items():
        docs = [] if path.endswith("NOTES.txt") else [d for d in yaml.safe_load_all(text) if d]
        if not any(d.get("kind") == "Secret" for d in docs):
            leaked += [f"{s[:6]}... in {path}" for s in leaks if s in text]
    r.check(not leaked, f"{name}: secret values only in the Secret", ", ".join(leaked))
    for obj in objs:
        for _, c in containers(obj):
            for e in c.get("env", []):
                r.check(
                    not re.search(r"(URL|PASSWORD|TOKENS?)$", e["name"]) or "value" not in e,
                    f"{name}: {c['name']} {e['name']} comes from a Secret, not a plain value",
                )
    made = [s["metadata"]["name"] for s in of_kind(objs, "Secret")]
    r.check(bool(made) != bool(existing), f"{name}: the chart makes a Secret unless existing")
    source = existing or (made or ["?"])[0]
    refs = {
        e["valueFrom"]["secretKeyRef"]["name"]
        for role in ("coordinator", "worker")
        for e in pod_spec(deployment(objs, role))["containers"][0]["env"]
        if "valueFrom" in e
    }
    r.check(refs == {source}, f"{name}: the URLs come from Secret {source}", str(refs))


def mounted_files(pod: Obj, c: Obj) -> set[str]:
    volumes = {v["name"]: v for v in pod.get("volumes", [])}
    files = set()
    for m in c.get("volumeMounts", []):
        for item in (volumes[m["name"]].get("secret") or {}).get("items", []):
            files.add(f"{m['mountPath']}/{item['path']}")
    return files


def check_roles(
    r: Report,
    name: str,
    values: dict[str, Any],
    objs: list[Obj],
    help_env: dict[str, set[str]] | None,
) -> None:
    """Each role's arguments, addresses, files and variables."""
    for role in ("coordinator", "worker"):
        d = deployment(objs, role)
        pod, c = pod_spec(d), pod_spec(d)["containers"][0]
        env = {e["name"]: e.get("value") for e in c.get("env", [])}
        env.update(configmap_env(objs, c))
        files = mounted_files(pod, c)
        for var, value in env.items():
            if var.endswith("_FILE") or var in ("MAILFERRY_TLS_CERT", "MAILFERRY_TLS_KEY"):
                r.check(value in files, f"{name}: {role} {var} is a mounted file", str(value))
        r.check(c["args"] == [role], f"{name}: {role} runs `mailferry {role}`")
        r.check(env.get("MAILFERRY_ADMIN_LISTEN") == "0.0.0.0:9090", f"{name}: {role} admin")
        annotations = d["spec"]["template"]["metadata"].get("annotations", {})
        r.check(
            {"checksum/config", "checksum/secret"} <= annotations.keys(),
            f"{name}: {role} pods restart on config and secret changes",
        )
        if role == "coordinator":
            tls = values.get("coordinator", {}).get("tls", {}).get("enabled", False)
            r.check(env.get("MAILFERRY_LISTEN") == "0.0.0.0:50051", f"{name}: gRPC address")
            r.check(("MAILFERRY_TLS_CERT" in env) == tls, f"{name}: TLS files when TLS is on")
        if help_env is not None:
            known = help_env[role] | ENV_NOT_IN_HELP
            unknown = sorted(k for k in env if k.startswith("MAILFERRY_") and k not in known)
            r.check(not unknown, f"{name}: {role} variables the binary reads", str(unknown))


# The per-role pod settings rendered verbatim into the pod spec when given.
PLACEMENT_KEYS = ("priorityClassName", "nodeSelector", "tolerations", "affinity")


def check_placement(r: Report, name: str, values: dict[str, Any], objs: list[Obj]) -> None:
    """Each role's placement values and extra volumes reach its pods, and every mount has its
    volume (a typo in extraVolumeMounts would otherwise fail only at `kubectl apply`)."""
    for role in ("coordinator", "worker"):
        v = values.get(role, {})
        d = deployment(objs, role)
        pod, c = pod_spec(d), pod_spec(d)["containers"][0]
        where = f"{name}: {role}"
        for key in PLACEMENT_KEYS:
            if v.get(key):
                r.check(pod.get(key) == v[key], f"{where} {key}", str(pod.get(key)))
        if not v.get("priorityClassName"):
            r.check("priorityClassName" not in pod, f"{where}: no priorityClassName unless given")
        annotations = d["spec"]["template"]["metadata"].get("annotations", {})
        for k, val in (v.get("podAnnotations") or {}).items():
            r.check(annotations.get(k) == val, f"{where} podAnnotations {k}", str(annotations))
        given = v.get("topologySpreadConstraints") or []
        rendered = pod.get("topologySpreadConstraints", [])
        r.check(len(rendered) == len(given), f"{where} topologySpreadConstraints", str(rendered))
        selector = {"matchLabels": d["spec"]["selector"]["matchLabels"]}
        for want, got in zip(given, rendered):
            expected = want if "labelSelector" in want else {**want, "labelSelector": selector}
            r.check(got == expected, f"{where} topologySpreadConstraint {want}", str(got))
        volumes = [vol["name"] for vol in pod.get("volumes", [])]
        r.check(len(volumes) == len(set(volumes)), f"{where}: volume names unique", str(volumes))
        r.check({"secrets", "tmp"} <= set(volumes), f"{where}: the chart's own volumes kept")
        for vol in v.get("extraVolumes") or []:
            r.check(vol in pod.get("volumes", []), f"{where} extraVolume {vol['name']}")
        mounts = c.get("volumeMounts", [])
        for m in v.get("extraVolumeMounts") or []:
            r.check(m in mounts, f"{where} extraVolumeMount {m['mountPath']}", str(mounts))
        for m in mounts:
            r.check(m["name"] in volumes, f"{where}: mount {m['mountPath']} has a volume")


def check_rendered(
    r: Report,
    name: str,
    values: dict[str, Any],
    manifests: dict[str, str],
    help_env: dict[str, set[str]] | None,
) -> None:
    """All invariants; `help_env` holds each role's `--help` variables, or None to skip."""
    objs = objects(manifests)
    check_grace(r, name, objs)
    check_container_security(r, name, objs)
    check_autoscaling(r, name, values, objs)
    check_availability(r, name, values, objs)
    check_secrets(r, name, values, manifests, objs)
    check_roles(r, name, values, objs, help_env)
    check_placement(r, name, values, objs)
