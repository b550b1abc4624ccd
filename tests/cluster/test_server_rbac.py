"""The server's ServiceAccount can do nothing in the Kubernetes API (issue 20, point 6),
proven on the real control plane.

The chart is installed with the real helm (the server on, as by default). Then:
- `kubectl auth can-i --list` as the server's account, in its namespace and in others,
  reads exactly what an account bound to nothing reads: the defaults every authenticated
  account holds (API discovery, the self-reviews), and not one right more;
- single `kubectl auth can-i` questions on what a server might be tempted to touch (its own
  admin token Secret, pods, pods/exec, Jobs, the Lease) all answer no;
- no RoleBinding or ClusterRoleBinding in the whole cluster names the account, and the
  server pods, after the API server's admission, carry no service-account token;
- `helm upgrade` keeps the admin token the install made (the chart's `lookup`).
"""

from __future__ import annotations

import base64
import re

import pytest

from tests.cluster.helpers import ROOT, Site
from tests.waiting import wait_until

pytestmark = pytest.mark.cluster

CHART = str(ROOT / "charts" / "qforge")
RELEASE = "qforge"  # contains the chart name: the server's objects are "qforge-server"
SERVER = "qforge-server"
SECRET = "qforge-admin-token"
TOKEN_PATH = "/var/run/secrets/kubernetes.io/serviceaccount"
# What every authenticated account may do (system:basic-user, system:discovery): review
# itself. Anything beyond these in the server's list would be a right the chart gave it.
SELF_REVIEWS = {
    "selfsubjectaccessreviews.authorization.k8s.io",
    "selfsubjectrulesreviews.authorization.k8s.io",
    "selfsubjectreviews.authentication.k8s.io",
}
_ROW = re.compile(r"^(\S+)?\s*\[([^\]]*)\]\s+\[([^\]]*)\]\s+\[([^\]]*)\]\s*$")

Row = tuple[str, str, str, str]  # resource, non-resource URLs, resource names, verbs


def can_i_list(site: Site, sa: str, namespace: str) -> set[Row]:
    """Every row of `kubectl auth can-i --list` (resource and non-resource URL rows)."""
    out = site.cluster.kubectl("auth", "can-i", "--list", "-n", namespace,
                               f"--as=system:serviceaccount:{site.namespace}:{sa}").stdout
    rows: set[Row] = set()
    for line in out.splitlines()[1:]:
        m = _ROW.match(line)
        assert m, f"unexpected line of kubectl auth can-i --list: {line!r}"
        resource, urls, names, verbs = m.groups()
        rows.add((resource or "", urls, names, verbs))
    return rows


def can_i(site: Site, sa: str, verb: str, resource: str, namespace: str | None,
          name: str = "") -> bool:
    resource, _, sub = resource.partition("/")
    target = f"{resource}/{name}" if name else resource
    proc = site.cluster.kubectl(
        "auth", "can-i", verb, target, *([f"--subresource={sub}"] if sub else []),
        *(["-n", namespace] if namespace else []),
        f"--as=system:serviceaccount:{site.namespace}:{sa}", check=False)
    answer = proc.stdout.strip()
    assert answer in ("yes", "no"), (verb, resource, proc.stdout, proc.stderr)
    return answer == "yes"


def admin_token(site: Site) -> str:
    data = site.kubectl_json("get", "secret", SECRET)["data"]
    return base64.b64decode(data["token"]).decode()


@pytest.mark.bare_site
def test_the_server_account_can_do_nothing_in_the_api(site: Site) -> None:
    ns = site.namespace
    site.bind_store("qforge-jobs", size="10Gi", access="ReadWriteOnce", create_claim=False)
    site.cluster.helm("install", RELEASE, CHART, "-n", ns, "--wait", "--timeout", "180s",
                      timeout=240)
    site.kubectl("create", "serviceaccount", "nobody")  # bound to nothing

    # --- the server runs under its own account, without a token ---------------------
    account = site.kubectl_json("get", "serviceaccount", SERVER)
    assert account["automountServiceAccountToken"] is False
    pods = wait_until(lambda: (p := site.kubectl_json(
        "get", "pods", "-l", "app.kubernetes.io/component=server")["items"]) and len(p) == 2
        and p, 60, "the two server pods")
    for pod in pods:
        spec = pod["spec"]  # as stored, after the ServiceAccount admission plugin
        assert spec["serviceAccountName"] == SERVER
        assert spec["automountServiceAccountToken"] is False
        assert not [v for v in spec["volumes"] if "projected" in v], spec["volumes"]
        for container in spec["containers"]:
            assert not [m for m in container["volumeMounts"]
                        if m["mountPath"].startswith(TOKEN_PATH)], container["volumeMounts"]

    # --- nothing binds it, anywhere ---------------------------------------------------
    subject = {"kind": "ServiceAccount", "name": SERVER, "namespace": ns}
    bindings = site.cluster.kubectl_json("get", "rolebindings,clusterrolebindings", "-A")
    naming_it = [b["metadata"]["name"] for b in bindings["items"]
                 if any({k: s.get(k) for k in subject} == subject
                        for s in b.get("subjects") or [])]
    assert naming_it == []
    # (the controller's binding is there, so the query did see the release's bindings)
    assert any(b["metadata"]["name"] == "qforge" and b["metadata"].get("namespace") == ns
               for b in bindings["items"])

    # --- the authorizer's full list: the defaults and nothing more --------------------
    for where in (ns, "default", "kube-system"):
        server_rows = can_i_list(site, SERVER, where)
        assert server_rows == can_i_list(site, "nobody", where), where
        resources = {r[0] for r in server_rows if r[0]}
        assert resources <= SELF_REVIEWS, resources - SELF_REVIEWS
        assert {r[3] for r in server_rows if r[0]} <= {"create"}
        # the non-resource rows are API discovery: only reads
        assert {r[3] for r in server_rows if not r[0]} <= {"get"}

    # --- and, question by question, what a server must never do ----------------------
    questions = [
        ("get", "secrets", ns, SECRET),  # not even its own admin token
        ("list", "secrets", ns, ""), ("get", "configmaps", ns, "qforge"),
        ("list", "pods", ns, ""), ("create", "pods", ns, ""), ("create", "pods/exec", ns, ""),
        ("get", "pods/log", ns, ""), ("create", "jobs.batch", ns, ""),
        ("list", "jobs.batch", ns, ""), ("delete", "jobs.batch", ns, ""),
        ("create", "events", ns, ""), ("get", "leases.coordination.k8s.io", ns, ""),
        ("get", "persistentvolumeclaims", ns, ""), ("create", "serviceaccounts/token", ns, ""),
        ("list", "jobs.batch", "default", ""), ("list", "nodes", None, ""),
        ("list", "namespaces", None, ""), ("impersonate", "serviceaccounts", ns, ""),
        ("bind", "roles.rbac.authorization.k8s.io", ns, ""),
    ]
    granted = [q for q in questions if can_i(site, SERVER, *q)]
    assert granted == []
    # the question itself can answer yes (the controller's account is allowed Jobs)
    assert can_i(site, "qforge", "create", "jobs.batch", ns)

    # --- the admin token the install made survives an upgrade -----------------------
    token = admin_token(site)
    assert re.fullmatch(r"[A-Za-z0-9]{43}", token)
    site.cluster.helm("upgrade", RELEASE, CHART, "-n", ns, "--reuse-values",
                      "--set", "maxConcurrentJobs=4", "--wait", "--timeout", "180s",
                      timeout=240)
    assert site.kubectl_json("get", "configmap", "qforge")["data"]["MAX_CONCURRENT_JOBS"] == "4"
    assert admin_token(site) == token
