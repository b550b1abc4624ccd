"""Least privilege, proven on the real control plane (issue 12, point 6).

The chart is installed once with the real helm (its optional NetworkPolicy on). Then:
- `kubectl auth can-i --list` as the controller's service account, in its namespace and
  in another: the complete set of rights it holds, minus what every authenticated
  account holds (measured as a service account with no binding), must be exactly what
  the controller's code and kopf call (controller/k8s/*);
- a matrix of single `kubectl auth can-i` questions (every verb on what it uses, a
  sample of what it must not touch: secrets, configmaps, pods/exec, other namespaces,
  cluster-scoped objects, RBAC escalation, impersonation) cross-checks that reading;
- a runner pod really created by a controller whose only credential is that account's
  token carries no service-account token (after the API server's admission), and the
  chart's NetworkPolicy, stored by the API server, selects it and not the controller.
"""

from __future__ import annotations

import json
import re
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from qforge.k8s import naming
from tests.cluster.helpers import ROOT, Site, refusals
from tests.waiting import wait_until

pytestmark = pytest.mark.cluster

CHART = str(ROOT / "charts" / "qforge")
SA = "qforge"
TOKEN_PATH = "/var/run/secrets/kubernetes.io/serviceaccount"

# What controller/k8s/* and kopf call (kopf --standalone, one namespace, no peering,
# no CRD): runner Jobs created, watched, counted, deleted (once recorded, and on a
# cancel) and, with a TTL, patched to take qforge's outcome finalizer off; pods read
# for why a job waits or failed; Events posted,
# and pod Events listed (bounded) for an autoscaler's "fits no node" verdict; one Lease
# for leader election.
USED: dict[str, set[str]] = {
    "jobs.batch": {"get", "list", "watch", "create", "delete", "patch"},
    "pods": {"get", "list", "watch"},
    "events": {"create", "list"},
    "leases.coordination.k8s.io": {"get", "create", "update"},
}
VERBS = ("get", "list", "watch", "create", "update", "patch", "delete", "deletecollection")
# namespaced things it must not touch (beyond the other verbs on what it uses)
FORBIDDEN_HERE = [("get", r) for r in (
    "secrets", "configmaps", "serviceaccounts", "services", "persistentvolumeclaims",
    "deployments.apps", "cronjobs.batch", "roles.rbac.authorization.k8s.io",
    "rolebindings.rbac.authorization.k8s.io", "networkpolicies.networking.k8s.io",
    "events.events.k8s.io", "pods/log")] + [("create", r) for r in (
    "pods/exec", "pods/attach", "pods/portforward", "pods/eviction",
    "serviceaccounts/token")] + [("update", "jobs.batch/status")]
CLUSTER_SCOPED = ("nodes", "namespaces", "persistentvolumes",
                  "clusterroles.rbac.authorization.k8s.io",
                  "clusterrolebindings.rbac.authorization.k8s.io",
                  "customresourcedefinitions.apiextensions.k8s.io",
                  "storageclasses.storage.k8s.io", "priorityclasses.scheduling.k8s.io")

_ROW = re.compile(r"^(\S+)?\s*\[([^\]]*)\]\s+\[([^\]]*)\]\s+\[([^\]]*)\]\s*$")


def _as(site: Site, sa: str) -> str:
    return f"--as=system:serviceaccount:{site.namespace}:{sa}"


def rights(site: Site, sa: str, namespace: str) -> dict[str, set[str]]:
    """`kubectl auth can-i --list`: resource -> verbs (resource rows only; a row limited
    to resource names is kept under "<resource>@<names>")."""
    out = site.cluster.kubectl("auth", "can-i", "--list", "-n", namespace,
                               _as(site, sa)).stdout
    found: dict[str, set[str]] = {}
    for line in out.splitlines()[1:]:
        m = _ROW.match(line)
        assert m, f"unexpected line of kubectl auth can-i --list: {line!r}"
        resource, _urls, names, verbs = m.groups()
        if not resource:
            continue  # a non-resource URL (/healthz, /api, ...): the same for everyone
        key = f"{resource}@{names}" if names else resource
        found.setdefault(key, set()).update(verbs.split())
    return found


def own(site: Site, sa: str, namespace: str, baseline: dict[str, set[str]]
        ) -> dict[str, set[str]]:
    """The rights `sa` holds beyond those of every authenticated account."""
    extra = {}
    for resource, verbs in rights(site, sa, namespace).items():
        more = verbs - baseline.get(resource, set())
        if more:
            extra[resource] = more
    return extra


def can_i(site: Site, verb: str, resource: str, namespace: str | None) -> bool:
    """One `kubectl auth can-i` as the controller; "pods/exec" is a subresource (kubectl
    would read "pods/exec" as the pod named "exec")."""
    resource, _, sub = resource.partition("/")
    where = ["-n", namespace] if namespace else []
    proc = site.cluster.kubectl("auth", "can-i", verb, resource,
                                *([f"--subresource={sub}"] if sub else []), *where,
                                _as(site, SA), check=False)
    answer = proc.stdout.strip()
    assert answer in ("yes", "no"), (verb, resource, proc.stdout, proc.stderr)
    return answer == "yes"


def _sa_kubeconfig(site: Site, path: Path) -> Path:
    token = site.kubectl("create", "token", SA, "--duration=1h").stdout.strip()
    admin = json.loads(site.cluster.kubeconfig.read_text())
    cluster = admin["clusters"][0]
    path.write_text(json.dumps({
        "apiVersion": "v1", "kind": "Config", "clusters": [cluster],
        "users": [{"name": SA, "user": {"token": token}}],
        "contexts": [{"name": SA, "context": {"cluster": cluster["name"], "user": SA,
                                              "namespace": site.namespace}}],
        "current-context": SA,
    }))
    return path


@pytest.mark.bare_site
def test_controller_holds_exactly_what_it_uses_and_runner_pods_hold_nothing(
        site: Site, tmp_path: Path) -> None:
    ns = site.namespace
    site.bind_store("qforge-jobs", size="10Gi", access="ReadWriteOnce", create_claim=False)
    t0 = time.monotonic()
    site.cluster.helm("install", "qforge", CHART, "-n", ns, "--wait", "--timeout", "180s",
                      "--set", "runner.networkPolicy.enabled=true", timeout=240)
    t_install = time.monotonic() - t0
    site.kubectl("create", "serviceaccount", "nobody")  # bound to nothing

    # --- the complete rule set, read back from the authorizer ---------------------
    t0 = time.monotonic()
    baseline = rights(site, "nobody", ns)
    assert own(site, SA, ns, baseline) == USED
    assert own(site, SA, "default", rights(site, "nobody", "default")) == {}
    assert own(site, SA, "kube-system", rights(site, "nobody", "kube-system")) == {}
    # the runner pods' account (the namespace's default one) holds nothing either
    assert own(site, "default", ns, baseline) == {}

    # --- the matrix, one question each --------------------------------------------
    questions: list[tuple[str, str, str | None, bool]] = []
    for resource in USED:
        questions += [(v, resource, ns, v in USED[resource]) for v in VERBS]
        questions += [(v, resource, "default", False) for v in ("list", "create")]
    questions += [(v, "jobs.batch", "kube-system", False) for v in ("list", "create")]
    questions += [(v, r, ns, False) for v, r in FORBIDDEN_HERE]
    questions += [("list", "secrets", ns, False), ("watch", "secrets", ns, False),
                  ("list", "configmaps", ns, False)]
    questions += [("list", r, None, False) for r in CLUSTER_SCOPED]
    questions += [("escalate", "roles.rbac.authorization.k8s.io", ns, False),
                  ("bind", "roles.rbac.authorization.k8s.io", ns, False),
                  ("impersonate", "serviceaccounts", ns, False),
                  ("impersonate", "users", None, False)]
    with ThreadPoolExecutor(max_workers=4) as pool:
        answers = list(pool.map(lambda q: can_i(site, q[0], q[1], q[2]), questions))
    wrong = [(v, r, n, want) for (v, r, n, want), got in zip(questions, answers, strict=True)
             if got is not want]
    assert wrong == []
    t_matrix = time.monotonic() - t0
    print(f"rbac: {len(questions)} can-i questions + 7 --list readings in {t_matrix:.1f} s "
          f"(helm install {t_install:.1f} s)")

    # --- a real runner pod, created with nothing but the account's token -----------
    config = site.kubectl_json("get", "configmap", "qforge")["data"]
    env = {**config, "JOBS_DIR": str(site.jobs_dir), "POLL_INTERVAL": "0.5",
           "KUBECONFIG": str(_sa_kubeconfig(site, tmp_path / "sa.kubeconfig")),
           "HEALTH_CHECK_INTERVAL": "5"}
    ctl = site.controller(**env)
    ctl.wait_leading()
    job_id = site.submit_succeeding()
    site.wait_status(job_id, "COMPLETED", 90)
    (pod,) = wait_until(lambda: site.kubectl_json(
        "get", "pods", "-l", naming.selector(job_id))["items"], 30, "the runner pod")
    spec = pod["spec"]
    # after the API server's ServiceAccount admission: still no token anywhere
    assert spec["automountServiceAccountToken"] is False
    assert spec.get("serviceAccountName", "default") == "default"
    assert not [v for v in spec["volumes"] if "projected" in v or "secret" in v], spec["volumes"]
    for container in spec["containers"] + spec.get("initContainers", []):
        assert not [m for m in container.get("volumeMounts", [])
                    if m["mountPath"].startswith(TOKEN_PATH)], container["volumeMounts"]
    log = ctl.log_text()
    assert refusals(log) == [], log[-3000:]

    # --- the NetworkPolicy, as the API server stored it ------------------------------
    policy = site.kubectl_json("get", "networkpolicy", "qforge-runner")["spec"]
    assert sorted(policy["policyTypes"]) == ["Egress", "Ingress"]
    assert not policy.get("ingress") and not policy.get("egress")
    selector = ",".join(f"{k}={v}" for k, v in policy["podSelector"]["matchLabels"].items())
    selected = {p["metadata"]["name"] for p in site.kubectl_json(
        "get", "pods", "-l", selector)["items"]}
    assert pod["metadata"]["name"] in selected
    controller_pods = {p["metadata"]["name"] for p in site.kubectl_json(
        "get", "pods", "-l", "app.kubernetes.io/component=controller")["items"]}
    assert controller_pods and not controller_pods & selected
