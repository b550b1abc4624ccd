"""The server's part of the chart (`qforge server`, issue 20 point 6), rendered and linted
by the real helm: its Deployment, Service, metrics Service and ServiceMonitor, Ingress,
admin token Secret, ServiceAccount (bound to nothing), disruption budget and
NetworkPolicies, and the controller's NetworkPolicy. The Deployment's arguments are parsed
by the real command line's parser. On the real API server: tests/cluster/test_server_rbac.py.
"""

from __future__ import annotations

import base64
import re
from pathlib import Path
from typing import Any

import pytest
import yaml

from qforge.cli.main import build_parser

from .test_chart import (
    CHART,
    FULLNAME,
    KUBE_VERSION,
    NAMESPACE,
    Manifest,
    _run,
    _template,
    assert_restricted,
    helm,
    one,
    render,
    render_notes,
)

__all__ = ["helm"]  # the fixture

SERVER = f"{FULLNAME}-server"
SECRET = f"{FULLNAME}-admin-token"
TOKEN_FILE = "/etc/qforge/admin/token"
SERVER_SELECTOR = {"app.kubernetes.io/name": "qforge", "app.kubernetes.io/instance": "qforge",
                   "app.kubernetes.io/component": "server"}
# every optional object on, the server's and the controller's included
ALL_ON: dict[str, Any] = {
    "server": {
        "ingress": {"enabled": True, "host": "qforge.example.org", "className": "nginx",
                    "annotations": {"cert-manager.io/cluster-issuer": "letsencrypt"}},
        "networkPolicy": {"enabled": True},
    },
    "controller": {"networkPolicy": {"enabled": True}},
    "runner": {"networkPolicy": {"enabled": True}},
    "metrics": {"serviceMonitor": {"enabled": True}, "prometheusRule": {"enabled": True},
                "dashboard": {"enabled": True}},
}


@pytest.fixture(scope="module")
def docs(helm: str) -> list[Manifest]:
    return render(helm)


@pytest.fixture(scope="module")
def all_on(helm: str, tmp_path_factory: pytest.TempPathFactory) -> list[Manifest]:
    return render(helm, values=ALL_ON, tmp=tmp_path_factory.mktemp("all-on"))


def server_pod(docs: list[Manifest]) -> Manifest:
    return dict(one(docs, "Deployment", component="server")["spec"]["template"]["spec"])


def server_container(docs: list[Manifest]) -> Manifest:
    (container,) = server_pod(docs)["containers"]
    return dict(container)


def _selects(selector: dict[str, str], labels: dict[str, str]) -> bool:
    return all(labels.get(k) == v for k, v in selector.items())


def _pod_labels(docs: list[Manifest], component: str) -> dict[str, str]:
    deploy = one(docs, "Deployment", component=component)
    return dict(deploy["spec"]["template"]["metadata"]["labels"])


# --- the Deployment ----------------------------------------------------------------


def test_the_server_deployment_runs_qforge_server_from_the_controller_image(
        docs: list[Manifest]) -> None:
    deploy = one(docs, "Deployment", component="server")
    assert deploy["metadata"]["name"] == SERVER
    spec = deploy["spec"]
    assert spec["replicas"] == 2
    # stateless: a rolling update that never leaves the API without a ready pod
    assert spec["strategy"] == {"type": "RollingUpdate",
                                "rollingUpdate": {"maxSurge": 1, "maxUnavailable": 0}}
    assert spec["selector"]["matchLabels"] == SERVER_SELECTOR
    assert SERVER_SELECTOR.items() <= spec["template"]["metadata"]["labels"].items()
    controller = one(docs, "Deployment", component="controller")
    assert not _selects(spec["selector"]["matchLabels"],
                        controller["spec"]["template"]["metadata"]["labels"])

    container = server_container(docs)
    (ctl,) = controller["spec"]["template"]["spec"]["containers"]
    assert container["image"] == ctl["image"] == "qforge-controller:0.1.0"
    # the image's entrypoint is `qforge controller`: the server replaces it
    assert container["command"] == ["qforge"]
    assert container["args"] == ["server", "--host", "0.0.0.0", "--port", "8000",
                                 "--metrics-port", "9100"]
    assert container["envFrom"] == [{"configMapRef": {"name": FULLNAME}}]
    assert {"name": "QFORGE_ADMIN_TOKEN_FILE", "value": TOKEN_FILE} in container["env"]
    assert container["ports"] == [
        {"name": "http", "containerPort": 8000, "protocol": "TCP"},
        {"name": "metrics", "containerPort": 9100, "protocol": "TCP"}]
    live, ready = container["livenessProbe"], container["readinessProbe"]
    assert live["httpGet"] == {"path": "/healthz", "port": "http"}
    assert ready["httpGet"] == {"path": "/readyz", "port": "http"}
    for probe in (live, ready):
        assert probe["periodSeconds"] >= 1 and probe["failureThreshold"] >= 1
        assert probe["timeoutSeconds"] >= 1


def test_the_server_mounts_the_store_read_write_tmp_and_its_token(
        docs: list[Manifest]) -> None:
    pod = server_pod(docs)
    container = server_container(docs)
    mounts = {m["mountPath"]: m for m in container["volumeMounts"]}
    assert set(mounts) == {"/jobs", "/tmp", "/etc/qforge/admin"}
    assert mounts["/jobs"] == {"name": "jobs", "mountPath": "/jobs"}  # read-write: submissions
    assert mounts["/etc/qforge/admin"]["readOnly"] is True
    assert mounts["/etc/qforge/admin"]["mountPath"] + "/token" == TOKEN_FILE
    volumes = {v["name"]: v for v in pod["volumes"]}
    assert volumes["jobs"]["persistentVolumeClaim"] == {"claimName": f"{FULLNAME}-jobs"}
    assert volumes[mounts["/tmp"]["name"]]["emptyDir"]["sizeLimit"] == "512Mi"
    secret = volumes[mounts["/etc/qforge/admin"]["name"]]["secret"]
    assert secret["secretName"] == SECRET
    assert secret["items"] == [{"key": "token", "path": "token"}]
    assert secret["defaultMode"] == 0o440  # root-owned, read by the pod's fsGroup
    # the same settings as the controller, and the same checksum: a config change rolls both
    controller = one(docs, "Deployment", component="controller")
    annotations = one(docs, "Deployment", component="server")["spec"]["template"][
        "metadata"]["annotations"]
    assert len(annotations["checksum/config"]) == 64
    assert annotations["checksum/config"] == controller["spec"]["template"]["metadata"][
        "annotations"]["checksum/config"]


def test_the_server_has_the_controllers_security_context(
        helm: str, docs: list[Manifest], tmp_path: Path) -> None:
    def contexts(rendered: list[Manifest], component: str) -> tuple[Any, Any]:
        pod = one(rendered, "Deployment", component=component)["spec"]["template"]["spec"]
        return pod["securityContext"], pod["containers"][0]["securityContext"]

    assert contexts(docs, "server") == contexts(docs, "controller")
    pod = server_pod(docs)
    assert_restricted(pod)  # Pod Security "restricted", and a read-only root filesystem
    assert pod["securityContext"]["runAsUser"] == 10001
    assert pod["securityContext"]["fsGroup"] == 10001
    assert server_container(docs)["securityContext"]["readOnlyRootFilesystem"] is True
    # and it follows the controller's values, not a copy of their defaults
    custom = render(helm, values={"controller": {
        "podSecurityContext": {"runAsNonRoot": True, "runAsUser": 20002, "runAsGroup": 20002,
                               "fsGroup": 20002, "seccompProfile": {"type": "RuntimeDefault"}},
        "securityContext": {"allowPrivilegeEscalation": False, "readOnlyRootFilesystem": True,
                            "runAsNonRoot": True, "capabilities": {"drop": ["ALL"]},
                            "runAsUser": 20002}}}, tmp=tmp_path)
    assert contexts(custom, "server") == contexts(custom, "controller")
    assert contexts(custom, "server")[0]["fsGroup"] == 20002


def test_the_server_pods_spread_across_nodes_and_follow_a_read_write_once_store(
        helm: str, docs: list[Manifest]) -> None:
    affinity = server_pod(docs)["affinity"]
    (spread,) = affinity["podAntiAffinity"]["preferredDuringSchedulingIgnoredDuringExecution"]
    assert spread["podAffinityTerm"]["topologyKey"] == "kubernetes.io/hostname"
    assert spread["podAffinityTerm"]["labelSelector"]["matchLabels"] == SERVER_SELECTOR
    # ReadWriteOnce (the default): the volume's node is the controller's
    (beside,) = affinity["podAffinity"]["requiredDuringSchedulingIgnoredDuringExecution"]
    assert beside["topologyKey"] == "kubernetes.io/hostname"
    assert _selects(beside["labelSelector"]["matchLabels"], _pod_labels(docs, "controller"))
    many = render(helm, "--set", "persistence.accessModes={ReadWriteMany}")
    assert set(server_pod(many)["affinity"]) == {"podAntiAffinity"}
    own = render(helm, "--set", "server.affinity.nodeAffinity.x=y")
    assert server_pod(own)["affinity"] == {"nodeAffinity": {"x": "y"}}


def test_every_pod_sets_memory_and_disk_but_no_cpu_limit(docs: list[Manifest]) -> None:
    """kube-score's ephemeral-storage finding, and the CPU-limit choice values.yaml
    states: requests for cpu, memory and ephemeral-storage; limits for memory and
    ephemeral-storage only."""
    pods = [d["spec"]["template"]["spec"] for d in docs if d["kind"] == "Deployment"]
    pods += [d["spec"] for d in docs if d["kind"] == "Pod"]
    assert len(pods) == 3  # controller, server, helm test
    for pod in pods:
        for container in pod["containers"]:
            resources = container["resources"]
            assert set(resources["requests"]) == {"cpu", "memory", "ephemeral-storage"}
            assert set(resources["limits"]) == {"memory", "ephemeral-storage"}
    comment = (CHART / "values.yaml").read_text()
    assert "No CPU limit, on purpose" in comment


def test_replicas_pull_secrets_and_extra_args(helm: str, tmp_path: Path) -> None:
    docs = render(helm, values={"server": {"replicas": 5, "extraArgs": ["--log-format", "json"],
                                           "trustProxyHeader": True},
                                "imagePullSecrets": ["qforge-registry"]}, tmp=tmp_path)
    assert one(docs, "Deployment", component="server")["spec"]["replicas"] == 5
    assert server_pod(docs)["imagePullSecrets"] == [{"name": "qforge-registry"}]
    assert server_container(docs)["args"][-3:] == ["--trust-proxy-header", "--log-format",
                                                   "json"]


# --- what the chart passes is what `qforge server` accepts -------------------------


def test_the_server_arguments_parse_with_the_real_command_line(
        helm: str, docs: list[Manifest]) -> None:
    container = server_container(docs)
    assert container["command"] == ["qforge"]
    parsed = build_parser().parse_args(container["args"])
    assert parsed.command == "server"
    assert (parsed.host, parsed.port, parsed.metrics_port) == ("0.0.0.0", 8000, 9100)
    assert parsed.trust_proxy_header is False
    trusting = render(helm, "--set", "server.trustProxyHeader=true,server.port=8080,"
                      "server.metricsPort=9200", "--set-json",
                      'server.extraArgs=["--log-format","json"]')
    parsed = build_parser().parse_args(server_container(trusting)["args"])
    assert parsed.trust_proxy_header is True and parsed.log_format == "json"
    assert (parsed.port, parsed.metrics_port) == (8080, 9200)
    no_metrics = render(helm, "--set", "metrics.enabled=false")
    args = server_container(no_metrics)["args"]
    assert "--metrics-port" not in args
    assert build_parser().parse_args(args).metrics_port is None
    assert [p["name"] for p in server_container(no_metrics)["ports"]] == ["http"]


# --- identity: a ServiceAccount with no rights at all ------------------------------


def test_the_server_account_is_bound_to_nothing_and_mounts_no_token(
        docs: list[Manifest], all_on: list[Manifest]) -> None:
    for rendered in (docs, all_on):
        sa = one(rendered, "ServiceAccount", component="server")
        assert sa["metadata"]["name"] == SERVER
        assert sa["automountServiceAccountToken"] is False
        pod = server_pod(rendered)
        assert pod["serviceAccountName"] == SERVER
        assert pod["automountServiceAccountToken"] is False
        subjects = [s for d in rendered if d["kind"] in ("RoleBinding", "ClusterRoleBinding")
                    for s in d.get("subjects") or []]
        assert subjects  # the controller's binding is there ...
        assert [s for s in subjects if s["name"] == SERVER] == []  # ... and names not the server
        assert not [d for d in rendered if d["kind"] in ("Role", "RoleBinding")
                    and d["metadata"]["labels"]["app.kubernetes.io/component"] == "server"]
        assert not [d for d in rendered if d["kind"].startswith("Cluster")]


# --- Services, metrics ---------------------------------------------------------------


def test_the_service_sends_port_80_to_the_servers_http_port(docs: list[Manifest]) -> None:
    services = {d["metadata"]["name"]: d for d in docs if d["kind"] == "Service"}
    service = services[SERVER]
    assert service["spec"]["type"] == "ClusterIP"
    assert service["spec"]["ports"] == [
        {"name": "http", "port": 80, "targetPort": "http", "protocol": "TCP"}]
    assert service["spec"]["selector"] == SERVER_SELECTOR
    assert _selects(service["spec"]["selector"], _pod_labels(docs, "server"))
    assert not _selects(service["spec"]["selector"], _pod_labels(docs, "controller"))
    metrics = services[f"{SERVER}-metrics"]
    assert metrics["spec"]["ports"] == [
        {"name": "metrics", "port": 9100, "targetPort": "metrics", "protocol": "TCP"}]
    assert metrics["spec"]["selector"] == SERVER_SELECTOR


def test_the_servers_metrics_are_scraped_by_a_service_monitor_of_their_own(
        all_on: list[Manifest]) -> None:
    monitors = {d["metadata"]["name"]: d for d in all_on if d["kind"] == "ServiceMonitor"}
    assert set(monitors) == {FULLNAME, SERVER}
    services = {d["metadata"]["name"]: d for d in all_on if d["kind"] == "Service"}

    def scraped(monitor: Manifest) -> set[str]:
        selector = monitor["spec"]["selector"]["matchLabels"]
        return {n for n, s in services.items() if _selects(selector, s["metadata"]["labels"])}

    assert scraped(monitors[SERVER]) == {f"{SERVER}-metrics"}  # not the API's Service
    assert scraped(monitors[FULLNAME]) == {f"{FULLNAME}-metrics"}
    (endpoint,) = monitors[SERVER]["spec"]["endpoints"]
    assert endpoint["port"] == "metrics" and endpoint["path"] == "/metrics"
    assert monitors[SERVER]["spec"]["namespaceSelector"] == {"matchNames": [NAMESPACE]}


# --- Ingress -------------------------------------------------------------------------


def test_no_ingress_by_default(docs: list[Manifest]) -> None:
    assert not [d for d in docs if d["kind"] == "Ingress"]


def test_the_ingress_routes_the_host_over_tls_to_the_service(all_on: list[Manifest]) -> None:
    ingress = one(all_on, "Ingress")
    assert ingress["metadata"]["name"] == SERVER
    assert ingress["metadata"]["annotations"] == {"cert-manager.io/cluster-issuer": "letsencrypt"}
    spec = ingress["spec"]
    assert spec["ingressClassName"] == "nginx"
    assert spec["tls"] == [{"hosts": ["qforge.example.org"], "secretName": f"{SERVER}-tls"}]
    (rule,) = spec["rules"]
    assert rule["host"] == "qforge.example.org"
    (path,) = rule["http"]["paths"]
    assert path["path"] == "/" and path["pathType"] == "Prefix"
    assert path["backend"] == {"service": {"name": SERVER, "port": {"name": "http"}}}
    service = next(d for d in all_on if d["kind"] == "Service"
                   and d["metadata"]["name"] == SERVER)
    assert [p["name"] for p in service["spec"]["ports"]] == ["http"]


def test_ingress_options(helm: str) -> None:
    own_secret = one(render(helm, "--set", "server.ingress.enabled=true,"
                            "server.ingress.host=q.example.org,"
                            "server.ingress.tls.secretName=q-cert"), "Ingress")
    assert own_secret["spec"]["tls"] == [{"hosts": ["q.example.org"], "secretName": "q-cert"}]
    assert "ingressClassName" not in own_secret["spec"]  # the cluster's default class
    plain = one(render(helm, "--set", "server.ingress.enabled=true,"
                       "server.ingress.host=q.example.org,server.ingress.tls.enabled=false"),
                "Ingress")
    assert "tls" not in plain["spec"]
    no_host = _template(helm, "--set", "server.ingress.enabled=true")
    assert no_host.returncode != 0
    assert "server.ingress.enabled needs server.ingress.host" in no_host.stderr


# --- the first admin token -----------------------------------------------------------


def _token(docs: list[Manifest]) -> str:
    secret = one(docs, "Secret")
    assert secret["metadata"]["name"] == SECRET
    assert secret["type"] == "Opaque"
    assert set(secret["data"]) == {"token"}
    return base64.b64decode(secret["data"]["token"]).decode()


def test_the_chart_makes_a_random_admin_token(helm: str, docs: list[Manifest]) -> None:
    token = _token(docs)
    assert re.fullmatch(r"[A-Za-z0-9]{43}", token), token  # 43 x log2(62) > 256 bits
    # random per render: `helm template` cannot look up the value an install keeps
    # (kept across upgrades: tests/cluster/test_server_rbac.py)
    assert _token(render(helm)) != token


def test_an_existing_secret_is_used_and_never_written(helm: str) -> None:
    docs = render(helm, "--set", "server.adminToken.existingSecret=site-admin")
    assert not [d for d in docs if d["kind"] == "Secret"]
    volumes = {v["name"]: v for v in server_pod(docs)["volumes"]}
    assert volumes["admin-token"]["secret"]["secretName"] == "site-admin"
    assert volumes["admin-token"]["secret"]["items"] == [{"key": "token", "path": "token"}]


# --- disruption budget, off switch ---------------------------------------------------


def test_a_disruption_budget_keeps_a_server_pod_through_a_drain(
        helm: str, docs: list[Manifest]) -> None:
    pdb = one(docs, "PodDisruptionBudget")
    assert pdb["metadata"]["name"] == SERVER
    assert pdb["spec"] == {"maxUnavailable": 1, "selector": {"matchLabels": SERVER_SELECTOR}}
    single = render(helm, "--set", "server.replicas=1")
    assert not [d for d in single if d["kind"] == "PodDisruptionBudget"]


def test_server_enabled_false_leaves_no_server_object(helm: str, all_on: list[Manifest],
                                                      tmp_path: Path) -> None:
    values = {**ALL_ON, "server": {**ALL_ON["server"], "enabled": False}}
    docs = render(helm, values=values, tmp=tmp_path)
    server_objects = [d["metadata"]["name"] for d in docs
                      if d["metadata"]["labels"].get("app.kubernetes.io/component") == "server"]
    assert server_objects == []
    assert not {"Ingress", "Secret", "PodDisruptionBudget"} & {d["kind"] for d in docs}
    on = [d for d in all_on
          if d["metadata"]["labels"].get("app.kubernetes.io/component") == "server"]
    assert sorted(d["kind"] for d in on) == sorted(
        ["Deployment", "Service", "Service", "ServiceAccount", "Secret", "Ingress",
         "PodDisruptionBudget", "ServiceMonitor", "NetworkPolicy"])


# --- NetworkPolicies ------------------------------------------------------------------


def _policies(docs: list[Manifest]) -> dict[str, Manifest]:
    return {d["metadata"]["name"]: d["spec"] for d in docs if d["kind"] == "NetworkPolicy"}


MONITORING_NS = [{"namespaceSelector": {"matchLabels": {
    "kubernetes.io/metadata.name": "monitoring"}}}]
DNS = {"ports": [{"port": 53, "protocol": "UDP"}, {"port": 53, "protocol": "TCP"}]}


def test_the_server_policy_lets_in_http_and_scrapes_and_lets_out_only_dns(
        all_on: list[Manifest]) -> None:
    policy = _policies(all_on)[SERVER]
    assert policy["podSelector"]["matchLabels"] == SERVER_SELECTOR
    assert _selects(policy["podSelector"]["matchLabels"], _pod_labels(all_on, "server"))
    assert not _selects(policy["podSelector"]["matchLabels"], _pod_labels(all_on, "controller"))
    assert sorted(policy["policyTypes"]) == ["Egress", "Ingress"]
    assert policy["ingress"] == [
        {"ports": [{"port": 8000, "protocol": "TCP"}]},  # the API: from any source
        {"ports": [{"port": 9100, "protocol": "TCP"}], "from": MONITORING_NS}]
    # no rule to the API server, nor anywhere else: the server calls nothing
    assert policy["egress"] == [DNS]


def test_the_controller_policy_lets_in_probes_and_scrapes_and_out_dns_and_the_api(
        all_on: list[Manifest]) -> None:
    policy = _policies(all_on)[f"{FULLNAME}-controller"]
    labels = _pod_labels(all_on, "controller")
    assert _selects(policy["podSelector"]["matchLabels"], labels)
    assert not _selects(policy["podSelector"]["matchLabels"], _pod_labels(all_on, "server"))
    assert sorted(policy["policyTypes"]) == ["Egress", "Ingress"]
    assert policy["ingress"] == [
        {"ports": [{"port": 8080, "protocol": "TCP"}]},
        {"ports": [{"port": 9102, "protocol": "TCP"}], "from": MONITORING_NS}]
    assert policy["egress"] == [
        DNS, {"ports": [{"port": 443, "protocol": "TCP"}, {"port": 6443, "protocol": "TCP"}]}]
    # the runner's policy is unchanged: nothing in, nothing out
    runner = _policies(all_on)[f"{FULLNAME}-runner"]
    assert runner["ingress"] == [] and runner["egress"] == []


def test_network_policy_values_reach_the_rules(helm: str, tmp_path: Path) -> None:
    ingress_ns = [{"namespaceSelector": {"matchLabels": {
        "kubernetes.io/metadata.name": "ingress-nginx"}}}]
    prometheus = [{"podSelector": {"matchLabels": {"app": "prometheus"}}}]
    docs = render(helm, values={
        "server": {"networkPolicy": {"enabled": True, "httpFrom": ingress_ns}},
        "controller": {"networkPolicy": {"enabled": True, "apiServer": {
            "cidrs": ["10.0.0.10/32", "10.0.0.11/32"], "ports": [6443]}}},
        "metrics": {"scrapeFrom": prometheus},
    }, tmp=tmp_path)
    policies = _policies(docs)
    assert policies[SERVER]["ingress"] == [
        {"ports": [{"port": 8000, "protocol": "TCP"}], "from": ingress_ns},
        {"ports": [{"port": 9100, "protocol": "TCP"}], "from": prometheus}]
    assert policies[f"{FULLNAME}-controller"]["egress"][1] == {
        "ports": [{"port": 6443, "protocol": "TCP"}],
        "to": [{"ipBlock": {"cidr": "10.0.0.10/32"}}, {"ipBlock": {"cidr": "10.0.0.11/32"}}]}
    off = _policies(render(helm, "--set", "server.networkPolicy.enabled=true,"
                           "controller.networkPolicy.enabled=true,metrics.enabled=false"))
    assert off[SERVER]["ingress"] == [{"ports": [{"port": 8000, "protocol": "TCP"}]}]
    assert off[f"{FULLNAME}-controller"]["ingress"] == [
        {"ports": [{"port": 8080, "protocol": "TCP"}]}]
    assert _policies(render(helm)) == {}  # all off by default (they need an enforcing CNI)


# --- lint, schema, notes --------------------------------------------------------------


def test_everything_on_passes_helm_lint_strict(helm: str, tmp_path: Path) -> None:
    values = tmp_path / "all-on.yaml"
    values.write_text(yaml.safe_dump(ALL_ON))
    result = _run(helm, "lint", "--strict", str(CHART), "--namespace", NAMESPACE,
                  "--kube-version", KUBE_VERSION, "-f", str(values))
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.parametrize(("values", "mentions"), [
    ({"server": {"replica": 3}}, "replica"),
    ({"server": {"enable": False}}, "enable"),
    ({"server": {"adminToken": {"existingSecretName": "x"}}}, "existingSecretName"),
    ({"server": {"ingress": {"hostname": "q.example.org"}}}, "hostname"),
    ({"server": {"ingress": {"tls": {"secret": "x"}}}}, "secret"),
    ({"server": {"ingress": {"annotation": {}}}}, "annotation"),
    ({"server": {"networkPolicy": {"httpfrom": []}}}, "httpfrom"),
    ({"server": {"service": {"type": "NodePort"}}}, "type"),
    ({"server": {"serviceAccount": {"automount": True}}}, "automount"),
    ({"server": {"readinessProbe": {"path": "/ready"}}}, "path"),
    ({"server": {"podDisruptionBudget": {"minAvailable": 1}}}, "minAvailable"),
    ({"controller": {"networkPolicy": {"apiserver": {}}}}, "apiserver"),
    ({"metrics": {"scrapeFrom": [{"namespaceselector": {}}]}}, "namespaceselector"),
    ({"tests": {"resource": {}}}, "resource"),
])
def test_the_schema_rejects_a_typo_in_the_new_keys(
        helm: str, tmp_path: Path, values: dict[str, Any], mentions: str) -> None:
    result = _template(helm, values=values, tmp=tmp_path)
    assert result.returncode != 0
    assert "values don't meet the specifications of the schema" in result.stderr
    assert mentions in result.stderr


@pytest.mark.parametrize(("values", "mentions"), [
    ({"server": {"replicas": 0}}, "replicas"),
    ({"server": {"port": 0}}, "port"),
    ({"server": {"enabled": "yes"}}, "enabled"),
    ({"server": {"ingress": {"host": "https://q.example.org"}}}, "host"),
    ({"server": {"ingress": {"path": "api"}}}, "path"),
    ({"server": {"adminToken": {"existingSecret": "Not_A_Name"}}}, "existingSecret"),
    ({"server": {"rollingUpdate": {"maxSurge": "lots"}}}, "maxSurge"),
    ({"server": {"tmpSize": "big"}}, "tmpSize"),
    ({"controller": {"networkPolicy": {"apiServer": {"cidrs": ["10.0.0.1"]}}}}, "cidrs"),
])
def test_the_schema_rejects_a_wrong_value_in_the_new_keys(
        helm: str, tmp_path: Path, values: dict[str, Any], mentions: str) -> None:
    result = _template(helm, values=values, tmp=tmp_path)
    assert result.returncode != 0
    assert mentions in result.stderr


def test_the_notes_tell_how_to_hand_out_a_url_and_a_token(helm: str, tmp_path: Path) -> None:
    notes = render_notes(helm, tmp_path)
    ns = NAMESPACE
    assert (f"kubectl -n {ns} get secret {SECRET} -o jsonpath='{{.data.token}}' | base64 -d"
            in notes)
    assert f"kubectl -n {ns} port-forward svc/{SERVER} 8000:80" in notes
    assert "qforge login http://localhost:8000" in notes
    assert "qforge token create alice --role submitter" in notes
    assert (f"kubectl -n {ns} exec deploy/{SERVER} -- qforge token create alice --role submitter"
            in notes)
    assert "server.ingress.enabled=true" in notes  # how to give chemists a URL

    with_url = render_notes(helm, tmp_path, "--set", "server.ingress.enabled=true,"
                            "server.ingress.host=qforge.example.org")
    assert "qforge login https://qforge.example.org" in with_url
    assert "port-forward" not in with_url
    assert f"exec deploy/{SERVER} -- qforge token create" in with_url

    without = render_notes(helm, tmp_path, "--set", "server.enabled=false")
    assert "qforge login" not in without and "token" not in without
    assert f"kubectl -n {ns} exec -i deploy/{FULLNAME} -- qforge submit - --wait" in without
