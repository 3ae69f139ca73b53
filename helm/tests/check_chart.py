"""Checks the Helm chart in helm/mailferry without a cluster (run by scripts/check-helm).

For every values file in helm/mailferry/ci/: `helm lint --strict` and `helm template` through
helm-python-sdk (Helm's Go SDK as a library: the package has no helm binary), every rendered
object validated with kubernetes-validate against the schemas of Kubernetes KUBE_VERSION, the
invariants of check_rendered.py, and, with a built binary, each role started on loopback with
its pod's settings (start_roles.py). Every values file in helm/tests/fail/ must fail to render
with the message its `# expect:` line names, so the checks cannot pass by rendering nothing.
Ends with an `N passed, N failed` line; exits 1 on any failure.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import helm_python as helm
import kubernetes_validate
import yaml

from check_rendered import Report, check_rendered, objects
from start_roles import start_role

ROOT = Path(__file__).resolve().parents[2]
CHART = ROOT / "helm" / "mailferry"
FAIL_DIR = ROOT / "helm" / "tests" / "fail"
KUBE_VERSION = "1.30.0"
RELEASE = NAMESPACE = "mailferry-ci"
# Custom resources: their schemas ship with KEDA and the Prometheus Operator, not with
# Kubernetes, so kubernetes-validate has none. Skipped by name; check_rendered.py checks them.
CRD_KINDS = {"ServiceMonitor", "ScaledObject", "TriggerAuthentication"}


def render(values: dict[str, Any]) -> dict[str, str]:
    with helm.Chart.load(str(CHART)) as chart:
        return chart.render(values, name=RELEASE, namespace=NAMESPACE, is_install=True)


def find_binary() -> str | None:
    binary = os.environ.get("MAILFERRY_BIN") or str(ROOT / "target" / "debug" / "mailferry")
    if os.access(binary, os.X_OK):
        return binary
    print(f"skipped: variable names and starts of the roles ({binary} is not built)")
    return None


def help_variables(binary: str) -> dict[str, set[str]]:
    """The `[env: ...]` variables of each role's --help."""
    found = {}
    for role in ("coordinator", "worker"):
        out = subprocess.run(
            [binary, role, "--help"], capture_output=True, text=True, check=True, timeout=30
        ).stdout
        found[role] = set(re.findall(r"\[env: (MAILFERRY_[A-Z0-9_]+)=", out))
    return found


def validate_schemas(r: Report, name: str, objs: list[dict[str, Any]]) -> int:
    """Validates every object Kubernetes has a schema for; returns how many were skipped."""
    skipped = 0
    for obj in objs:
        what = f"{name}: {obj['kind']} {obj['metadata']['name']}"
        if obj["kind"] in CRD_KINDS:
            skipped += 1
            continue
        try:
            kubernetes_validate.validate(obj, KUBE_VERSION, strict=True)
            r.check(True, what)
        except (kubernetes_validate.ValidationError, kubernetes_validate.SchemaNotFoundError) as e:
            r.check(False, f"{what}: Kubernetes {KUBE_VERSION} schema", str(e).splitlines()[0])
    return skipped


def check_values_file(r: Report, path: Path, binary: str | None) -> None:
    name = path.name
    values = yaml.safe_load(path.read_text()) or {}
    lint = helm.lint(str(CHART), values, strict=True, kube_version=f"v{KUBE_VERSION}")
    problems = [m for m in lint["messages"] if m["severity"] >= 2] + lint["errors"]
    r.check(not problems, f"{name}: helm lint --strict", str(problems))
    try:
        manifests = render(values)
    except helm.HelmError as e:
        r.check(False, f"{name}: helm template", str(e))
        return
    objs = objects(manifests)
    skipped = validate_schemas(r, name, objs)
    print(f"{name}: {len(objs)} objects, {len(objs) - skipped} validated, {skipped} skipped (CRD)")
    try:
        check_rendered(r, name, values, manifests, help_variables(binary) if binary else None)
        # Without TLS files to serve and with the secrets at hand (no existingSecret).
        tls = values.get("coordinator", {}).get("tls", {}).get("enabled", False)
        if binary and not tls and any(o["kind"] == "Secret" for o in objs):
            for role in ("coordinator", "worker"):
                start_role(r, name, binary, objs, role)
    except (AssertionError, KeyError, StopIteration) as e:
        r.check(False, f"{name}: invariants", repr(e))


def check_refused(r: Report, path: Path) -> None:
    text = path.read_text()
    expect = re.search(r"^# expect: (.+)$", text, re.M)
    if not expect:
        r.check(False, f"fail/{path.name}: has an `# expect:` line")
        return
    try:
        render(yaml.safe_load(text) or {})
        r.check(False, f"fail/{path.name}: refused", "it rendered")
    except helm.HelmRenderError as e:
        r.check(expect[1] in str(e), f"fail/{path.name}: refused with {expect[1]!r}", str(e))


def main() -> int:
    r = Report()
    print(
        f"Helm SDK {helm.helm_sdk_version()} (helm-python-sdk {helm.__version__}), "
        f"kubernetes-validate {kubernetes_validate.__version__}, Kubernetes {KUBE_VERSION}; "
        f"no schema, skipped by kind: {', '.join(sorted(CRD_KINDS))}"
    )
    binary = find_binary()
    files = sorted((CHART / "ci").glob("*.yaml"))
    r.check(len(files) >= 4, "values files in helm/mailferry/ci", str(files))
    for path in files:
        check_values_file(r, path, binary)
    refused = sorted(FAIL_DIR.glob("*.yaml"))
    r.check(len(refused) >= 1, "values files in helm/tests/fail")
    for path in refused:
        check_refused(r, path)
    print(f"helm chart: {r.passed} passed, {r.failed} failed")
    return 1 if r.failed else 0


if __name__ == "__main__":
    sys.exit(main())
