"""A real Kubernetes control plane on loopback, with kwok simulating the nodes.

etcd, kube-apiserver (TLS, RBAC, service-account tokens, PodSecurity admission),
kube-controller-manager (all default controllers: Job, TTL-after-finished, garbage
collector, service accounts and their tokens, namespaces, ...), kube-scheduler and kwok,
each a process of its own with a log under ``<run_dir>/logs``.
"""

from __future__ import annotations

import base64
import contextlib
import fcntl
import json
import os
import shutil
import signal
import ssl
import subprocess
import sys
import threading
import time
import urllib.request
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .pki import PKI, CertPair
from .procs import Daemon, Supervisor, free_ports, port_open, wait_until
from .tools import KubeToolsError, Tools, find_tools

SERVICE_CIDR = "10.96.0.0/16"
KUBERNETES_SERVICE_IP = "10.96.0.1"
CLUSTER_DOMAIN = "cluster.local"
KWOK_ANNOTATION = "kwok.x-k8s.io/node"
# A pod owned by a Job "runs" on a kwok node for this long (default 1s), then succeeds.
KWOK_RUN_ANNOTATION = "pod-complete.stage.kwok.x-k8s.io/delay"

STAGES_FILE = Path(__file__).with_name("kwok-stages.yaml")


def default_run_root() -> Path:
    return Path(os.environ.get("QFORGE_KUBE_RUN_DIR", "/tmp/qforge-kube"))


class KubectlError(KubeToolsError):
    def __init__(self, args: Sequence[str], proc: subprocess.CompletedProcess[str]) -> None:
        self.proc = proc
        super().__init__(
            f"kubectl {' '.join(args)} failed (exit {proc.returncode}): "
            f"{(proc.stderr or proc.stdout).strip()}"
        )


@dataclass
class ClusterOptions:
    name: str = "dev"
    run_root: Path = field(default_factory=default_run_root)
    kwok_nodes: int = 2
    node_cpu: str = "4"
    node_memory: str = "8Gi"
    node_pods: str = "110"
    # Local disk, as every real kubelet reports it: without it, a pod that requests
    # ephemeral-storage (the chart's controller and server do) never fits a kwok node.
    node_ephemeral_storage: str = "100Gi"
    # Client rate limits of kube-controller-manager and kube-scheduler. Their defaults
    # (20/30 and 50/100) make the Job controller and the scheduler, not the system under
    # test, the limit well below 50 launches/s; a real cluster's control plane is tuned
    # the same way for batch work. And Jobs the Job controller syncs at once (default 5).
    kube_api_qps: int = 300
    kube_api_burst: int = 600
    concurrent_job_syncs: int = 50
    # For the heaviest benchmarks (bench/bench_scale.py), where the control plane's own
    # CPU on a small machine is the limit: GOGC of its Go processes (None: Go's default,
    # 100; 400 trades memory, which the benchmark machine has, for less collection), and
    # whether kube-apiserver runs API Priority and Fairness (its per-request queuing;
    # the 429 test of tests/cluster needs it on).
    go_gc: int | None = None
    priority_and_fairness: bool = True
    start_timeout: float = 90.0
    # the API server's address; a real node needs one that pods can reach
    bind_address: str = "127.0.0.1"


def _kubeconfig(server: str, ca: Path, user: str, pair: CertPair) -> dict[str, Any]:
    def b64(p: Path) -> str:
        return base64.b64encode(p.read_bytes()).decode()

    return {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [
            {
                "name": "qforge-test",
                "cluster": {"server": server, "certificate-authority-data": b64(ca)},
            }
        ],
        "users": [
            {
                "name": user,
                "user": {
                    "client-certificate-data": b64(pair.cert),
                    "client-key-data": b64(pair.key),
                },
            }
        ],
        "contexts": [{"name": "qforge-test", "context": {"cluster": "qforge-test", "user": user}}],
        "current-context": "qforge-test",
    }


@contextlib.contextmanager
def _signals_deferred() -> Iterator[None]:
    """Finish a teardown even when SIGINT/SIGTERM arrive meanwhile; re-raise them after."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    received: list[int] = []
    previous = {sig: signal.getsignal(sig) for sig in (signal.SIGINT, signal.SIGTERM)}
    for sig in previous:
        signal.signal(sig, lambda signum, _frame: received.append(signum))
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        if received:
            signal.raise_signal(received[0])


def _https_get(url: str, ctx: ssl.SSLContext, timeout: float = 3.0) -> tuple[int, str]:
    with urllib.request.urlopen(url, context=ctx, timeout=timeout) as resp:
        return int(resp.status), resp.read().decode(errors="replace")


def _insecure_ctx() -> ssl.SSLContext:
    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    return ctx


class ControlPlane:
    """One named test cluster under ``<run_root>/<name>``.

    ``start()`` either starts it or, when a healthy cluster of that name already runs,
    reuses it (then ``stop()`` leaves it running: only the starter stops it).
    """

    mode = "control-plane"

    def __init__(self, options: ClusterOptions | None = None, tools: Tools | None = None) -> None:
        self.options = options or ClusterOptions()
        self.tools = tools or find_tools()
        self.run_dir = self.options.run_root / self.options.name
        self.log_dir = self.run_dir / "logs"
        self.bin_dir = self.run_dir / "bin"
        self.kubeconfig = self.run_dir / "admin.kubeconfig"
        self.state_file = self.run_dir / "state.json"
        self.supervisor = Supervisor(self.log_dir)
        self.server = ""
        self.ports: dict[str, int] = {}
        self.owned = False
        self.reused = False
        self._lock_fd: int | None = None

    # ------------------------------------------------------------------ public API
    def kubectl(
        self,
        *args: str,
        check: bool = True,
        input: str | None = None,
        timeout: float = 120.0,
    ) -> subprocess.CompletedProcess[str]:
        """Run the version-matched kubectl against this cluster (text output captured)."""
        argv = [str(self.tools["kubectl"]), "--kubeconfig", str(self.kubeconfig), *args]
        try:
            proc = subprocess.run(
                argv, input=input, capture_output=True, text=True, timeout=timeout, check=False
            )
        except subprocess.TimeoutExpired as exc:
            raise KubeToolsError(f"kubectl {' '.join(args)} timed out after {timeout}s") from exc
        if check and proc.returncode != 0:
            raise KubectlError(args, proc)
        return proc

    def kubectl_json(self, *args: str) -> Any:
        return json.loads(self.kubectl(*args, "-o", "json").stdout)

    def apply(
        self, manifest: str | dict[str, Any] | list[dict[str, Any]], namespace: str = ""
    ) -> None:
        """``kubectl apply`` a YAML/JSON string or object(s)."""
        text = (
            manifest
            if isinstance(manifest, str)
            else json.dumps(
                manifest
                if isinstance(manifest, dict)
                else {"apiVersion": "v1", "kind": "List", "items": manifest}
            )
        )
        ns = ["-n", namespace] if namespace else []
        self.kubectl("apply", *ns, "-f", "-", input=text)

    def helm(
        self, *args: str, check: bool = True, timeout: float = 300.0
    ) -> subprocess.CompletedProcess[str]:
        """Run the pinned helm against this cluster (its caches kept in the run dir)."""
        env = self.env()
        for var, sub in (
            ("HELM_CACHE_HOME", "cache"),
            ("HELM_CONFIG_HOME", "config"),
            ("HELM_DATA_HOME", "data"),
        ):
            env[var] = str(self.run_dir / "helm" / sub)
        argv = [str(self.tools["helm"]), "--kubeconfig", str(self.kubeconfig), *args]
        try:
            proc = subprocess.run(
                argv, capture_output=True, text=True, timeout=timeout, env=env, check=False
            )
        except subprocess.TimeoutExpired as exc:
            raise KubeToolsError(f"helm {' '.join(args)} timed out after {timeout}s") from exc
        if check and proc.returncode != 0:
            raise KubeToolsError(
                f"helm {' '.join(args)} failed (exit {proc.returncode}): {proc.stderr.strip()}"
            )
        return proc

    def namespace(
        self, name: str, labels: dict[str, str] | None = None, timeout: float = 30.0
    ) -> str:
        """Create (or update) a namespace and wait until its ``default`` service account exists."""
        ns: dict[str, Any] = {
            "apiVersion": "v1",
            "kind": "Namespace",
            "metadata": {"name": name, "labels": dict(labels or {})},
        }
        self.apply(ns)
        wait_until(
            f"service account default in namespace {name}",
            lambda: (
                self.kubectl("get", "serviceaccount", "default", "-n", name, check=False).returncode
                == 0
            ),
            timeout,
        )
        return name

    def env(self) -> dict[str, str]:
        """Environment for a child process: KUBECONFIG set, the cluster's binaries on PATH."""
        env = dict(os.environ)
        env["KUBECONFIG"] = str(self.kubeconfig)
        env["PATH"] = f"{self.bin_dir}{os.pathsep}{env.get('PATH', '')}"
        return env

    def healthy(self) -> bool:
        try:
            status, body = _https_get(f"{self.server}/readyz", self._admin_ctx())
            return status == 200 and body.strip() == "ok"
        except (OSError, ssl.SSLError):
            return False

    # ------------------------------------------------------------------ lifecycle
    def start(self) -> ControlPlane:
        self.options.run_root.mkdir(parents=True, exist_ok=True)
        self._acquire_lock()
        try:
            if self._try_reuse():
                return self
            self._cleanup_stale()
            self.owned = True
            try:
                self._start_all()
                self._write_state()
            except BaseException:
                self._stop_owned(keep=True)
                raise
            return self
        finally:
            self._release_lock()

    def stop(self, keep_logs: bool = False) -> None:
        """Tear the cluster down if this handle started it; keep the run dir when asked."""
        if not self.owned:
            return
        self._acquire_lock()
        try:
            with _signals_deferred():
                self._stop_owned(keep=keep_logs)
        finally:
            self._release_lock()

    def adopt(self) -> bool:
        """Take over a cluster of this name started by another process (to stop it)."""
        state = self._read_state()
        if not state:
            return False
        self.server = str(state.get("server", ""))
        self.ports = dict(state.get("ports", {}))
        self.owned = True
        return True

    def restart(self, component: str, timeout: float | None = None) -> float:
        """Restart one daemon of a cluster this handle started (chaos tests): stop it by
        its PID, start it again with the same arguments (the same data dir, ports and
        certificates), and wait, bounded, until it and the API server are healthy again.
        etcd comes back with its data; the API server, the controllers and kwok reconnect
        on their own. Returns the seconds from the stop to healthy again."""
        if not self.owned:
            raise KubeToolsError(f"cluster {self.options.name!r} was not started here")
        if component not in ("etcd", "kube-apiserver", "kube-controller-manager",
                             "kube-scheduler", "kwok"):
            raise KubeToolsError(f"cannot restart {component!r}")
        t0 = time.monotonic()
        timeout = self.options.start_timeout if timeout is None else timeout
        self.supervisor.restart(component)
        self._write_state()  # its new PID, for reuse and for reaping
        if component == "etcd":
            wait_until("etcd /health after its restart", self._etcd_healthy, timeout,
                       self.supervisor)
        wait_until(f"kube-apiserver /readyz after restarting {component}", self.healthy,
                   timeout, self.supervisor)
        return time.monotonic() - t0

    def _etcd_healthy(self) -> bool:
        url = f"http://127.0.0.1:{self.ports['etcd']}/health"
        with urllib.request.urlopen(url, timeout=2) as r:
            return '"health":"true"' in r.read().decode()

    def __enter__(self) -> ControlPlane:
        return self.start()

    def __exit__(self, exc_type: object, *_: object) -> None:
        self.stop(keep_logs=exc_type is not None)

    # ------------------------------------------------------------------ internals
    def _acquire_lock(self, timeout: float = 300.0) -> None:
        if self._lock_fd is not None:
            return
        self.options.run_root.mkdir(parents=True, exist_ok=True)
        fd = os.open(
            self.options.run_root / f".{self.options.name}.lock", os.O_CREAT | os.O_RDWR, 0o644
        )
        deadline = time.monotonic() + timeout
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() > deadline:
                    os.close(fd)
                    raise KubeToolsError(
                        f"cluster {self.options.name!r} is being started or stopped by another "
                        f"process (lock {self.options.run_root}); gave up after {timeout:.0f}s"
                    ) from None
                time.sleep(0.5)
        self._lock_fd = fd

    def _release_lock(self) -> None:
        if self._lock_fd is not None:
            fcntl.flock(self._lock_fd, fcntl.LOCK_UN)
            os.close(self._lock_fd)
            self._lock_fd = None

    def _admin_ctx(self) -> ssl.SSLContext:
        ctx = ssl.create_default_context(cafile=str(self.run_dir / "pki" / "ca.crt"))
        ctx.load_cert_chain(
            str(self.run_dir / "pki" / "admin.crt"), str(self.run_dir / "pki" / "admin.key")
        )
        return ctx

    def _read_state(self) -> dict[str, Any] | None:
        try:
            data = json.loads(self.state_file.read_text())
        except (OSError, ValueError):
            return None
        return data if isinstance(data, dict) else None

    def _state_daemons(self, state: dict[str, Any]) -> list[Daemon]:
        return [
            Daemon(d["name"], list(d["argv"]), int(d["pid"]), Path(d["log"]))
            for d in state.get("daemons", [])
        ]

    def _try_reuse(self) -> bool:
        state = self._read_state()
        if not state or state.get("mode") != self.mode:
            return False
        self.server = str(state["server"])
        self.ports = dict(state.get("ports", {}))
        daemons = self._state_daemons(state)
        if daemons and all(d.alive() for d in daemons) and self.healthy():
            self.reused = True
            self.owned = False
            return True
        return False

    def _cleanup_stale(self) -> None:
        """A previous run of this name that died or was killed: stop what is left of it."""
        state = self._read_state()
        if state:
            for d in reversed(self._state_daemons(state)):
                if d.alive():  # same PID still running the same binary: it is ours
                    d.stop()
            self._cleanup_extra(state)
        if self.run_dir.exists():
            shutil.rmtree(self.run_dir, ignore_errors=True)

    def _cleanup_extra(self, state: dict[str, Any]) -> None:
        """Hook for modes that leave more than processes behind (mounts, interfaces)."""

    def _write_state(self) -> None:
        state = {
            "mode": self.mode,
            "name": self.options.name,
            "server": self.server,
            "kubeconfig": str(self.kubeconfig),
            "ports": self.ports,
            "owner_pid": os.getpid(),
            "daemons": [
                {"name": d.name, "pid": d.pid, "argv": d.argv, "log": str(d.log)}
                for d in self.supervisor.daemons
            ],
        }
        tmp = self.state_file.with_suffix(".tmp")
        tmp.write_text(json.dumps(state, indent=2))
        tmp.replace(self.state_file)

    def _stop_owned(self, keep: bool) -> None:
        if not self.supervisor.daemons:
            # a handle that lost its Popen objects (the by-hand `down`): stop from the state file
            state = self._read_state()
            if state:
                self.supervisor.daemons = self._state_daemons(state)
        self._before_stop()
        self.supervisor.stop_all()
        self._after_stop()
        leftover = [p for p in self.ports.values() if port_open(p, self._probe_host())]
        if leftover:
            print(f"warning: ports still open after teardown: {leftover}", file=sys.stderr)
        if keep:
            print(f"qforge test cluster logs kept in {self.log_dir}", file=sys.stderr)
            with contextlib.suppress(OSError):
                self.state_file.unlink()
        else:
            shutil.rmtree(self.run_dir, ignore_errors=True)
        self.owned = False

    def _before_stop(self) -> None:
        """Hook: runs while the API server is still up."""

    def _after_stop(self) -> None:
        """Hook: runs after every daemon has stopped."""

    def _probe_host(self) -> str:
        return (
            "127.0.0.1"
            if self.options.bind_address in ("0.0.0.0", "")
            else self.options.bind_address
        )

    def _link_binaries(self) -> None:
        self.bin_dir.mkdir(parents=True, exist_ok=True)
        for name, path in self.tools.paths.items():
            link = self.bin_dir / name
            with contextlib.suppress(FileNotFoundError):
                link.unlink()
            link.symlink_to(path)

    def _start_all(self) -> None:
        t0 = time.monotonic()
        timeout = self.options.start_timeout
        self.run_dir.mkdir(parents=True, exist_ok=True)
        self._link_binaries()
        host = self.options.bind_address
        probe = self._probe_host()
        etcd_client, etcd_peer, api, cm, sched, kwok = free_ports(6)
        if host != "127.0.0.1":
            api = free_ports(1, probe)[0]
        self.ports = {
            "etcd": etcd_client,
            "etcd-peer": etcd_peer,
            "apiserver": api,
            "controller-manager": cm,
            "scheduler": sched,
            "kwok": kwok,
        }
        pki = PKI(self.run_dir / "pki")
        self.server = f"https://{probe}:{api}"
        sup = self.supervisor
        t = self.tools

        # etcd
        go = self._go_env()
        sup.start(
            "etcd",
            [
                t["etcd"],
                "--name",
                "qforge",
                "--data-dir",
                self.run_dir / "etcd",
                "--listen-client-urls",
                f"http://127.0.0.1:{etcd_client}",
                "--advertise-client-urls",
                f"http://127.0.0.1:{etcd_client}",
                "--listen-peer-urls",
                f"http://127.0.0.1:{etcd_peer}",
                "--initial-advertise-peer-urls",
                f"http://127.0.0.1:{etcd_peer}",
                "--initial-cluster",
                f"qforge=http://127.0.0.1:{etcd_peer}",
                "--unsafe-no-fsync",
                "--log-level",
                "warn",
            ],
            env=go,
        )

        wait_until("etcd /health", self._etcd_healthy, timeout, sup)

        # kube-apiserver
        ips = tuple(sorted({"127.0.0.1", KUBERNETES_SERVICE_IP, probe}))
        serving = pki.issue(
            "apiserver",
            "kube-apiserver",
            dns=(
                "localhost",
                "kubernetes",
                "kubernetes.default",
                "kubernetes.default.svc",
                f"kubernetes.default.svc.{CLUSTER_DOMAIN}",
            ),
            ips=ips,
            server=True,
        )
        kubelet_client = pki.issue(
            "apiserver-kubelet-client", "kube-apiserver-kubelet-client", ("system:masters",)
        )
        admin = pki.issue("admin", "qforge-test-admin", ("system:masters",))
        advertise = probe  # the address pods reach the API on (real node), else loopback
        api_args: list[str | Path] = [
            t["kube-apiserver"],
            "--etcd-servers",
            f"http://127.0.0.1:{etcd_client}",
            "--bind-address",
            host,
            "--secure-port",
            str(api),
            "--advertise-address",
            advertise,
            "--tls-cert-file",
            serving.cert,
            "--tls-private-key-file",
            serving.key,
            "--client-ca-file",
            pki.ca.cert,
            "--service-account-issuer",
            f"https://kubernetes.default.svc.{CLUSTER_DOMAIN}",
            "--service-account-key-file",
            pki.sa_pub,
            "--service-account-signing-key-file",
            pki.sa_key,
            "--service-cluster-ip-range",
            SERVICE_CIDR,
            "--authorization-mode",
            "Node,RBAC",
            "--enable-admission-plugins",
            "NodeRestriction",
            "--kubelet-client-certificate",
            kubelet_client.cert,
            "--kubelet-client-key",
            kubelet_client.key,
            "--kubelet-preferred-address-types",
            "InternalIP,Hostname",
            "--allow-privileged=true",
            "--profiling=false",
            "--cert-dir",
            self.run_dir / "apiserver-certs",
        ]
        if advertise == "127.0.0.1":
            # loopback may not be an endpoint of the `kubernetes` Service; nothing in the
            # cluster needs to reach the API in this mode (kwok pods run nothing)
            api_args += ["--endpoint-reconciler-type", "none"]
        if not self.options.priority_and_fairness:
            api_args += ["--enable-priority-and-fairness=false"]
        sup.start("kube-apiserver", api_args, env=go)
        self.kubeconfig.write_text(
            json.dumps(_kubeconfig(self.server, pki.ca.cert, "admin", admin), indent=2)
        )
        wait_until("kube-apiserver /readyz", self.healthy, timeout, sup)

        # kube-controller-manager and kube-scheduler, each with its own identity
        for comp, cn in (
            ("controller-manager", "system:kube-controller-manager"),
            ("scheduler", "system:kube-scheduler"),
        ):
            pair = pki.issue(comp, cn)
            (self.run_dir / f"{comp}.kubeconfig").write_text(
                json.dumps(_kubeconfig(self.server, pki.ca.cert, cn, pair))
            )
        cm_kc = self.run_dir / "controller-manager.kubeconfig"
        sup.start(
            "kube-controller-manager",
            [
                t["kube-controller-manager"],
                "--kubeconfig",
                cm_kc,
                "--authentication-kubeconfig",
                cm_kc,
                "--authorization-kubeconfig",
                cm_kc,
                "--bind-address",
                "127.0.0.1",
                "--secure-port",
                str(cm),
                "--cert-dir",
                self.run_dir / "controller-manager-certs",
                "--leader-elect=false",
                "--controllers",
                "*",
                "--use-service-account-credentials=true",
                "--service-account-private-key-file",
                pki.sa_key,
                "--root-ca-file",
                pki.ca.cert,
                "--cluster-signing-cert-file",
                pki.ca.cert,
                "--cluster-signing-key-file",
                pki.ca.key,
                "--cluster-name",
                "qforge-test",
                f"--kube-api-qps={self.options.kube_api_qps}",
                f"--kube-api-burst={self.options.kube_api_burst}",
                f"--concurrent-job-syncs={self.options.concurrent_job_syncs}",
            ],
            env=go,
        )
        sched_kc = self.run_dir / "scheduler.kubeconfig"
        sup.start(
            "kube-scheduler",
            [
                t["kube-scheduler"],
                "--kubeconfig",
                sched_kc,
                "--authentication-kubeconfig",
                sched_kc,
                "--authorization-kubeconfig",
                sched_kc,
                "--bind-address",
                "127.0.0.1",
                "--secure-port",
                str(sched),
                "--cert-dir",
                self.run_dir / "scheduler-certs",
                "--leader-elect=false",
                f"--kube-api-qps={self.options.kube_api_qps}",
                f"--kube-api-burst={self.options.kube_api_burst}",
            ],
            env=go,
        )
        insecure = _insecure_ctx()
        for comp, port in (("kube-controller-manager", cm), ("kube-scheduler", sched)):
            url = f"https://127.0.0.1:{port}/healthz"

            def component_ok(u: str = url) -> bool:
                return _https_get(u, insecure)[0] == 200

            wait_until(f"{comp} {url}", component_ok, timeout, sup)

        self._start_nodes(pki)
        wait_until(
            "service account default in namespace default (controller-manager at work)",
            lambda: self.kubectl("get", "serviceaccount", "default", check=False).returncode == 0,
            timeout,
            sup,
        )
        print(
            f"qforge test cluster {self.options.name!r} ({self.mode}) up in "
            f"{time.monotonic() - t0:.1f}s: KUBECONFIG={self.kubeconfig}",
            file=sys.stderr,
        )

    def _go_env(self) -> dict[str, str] | None:
        return None if self.options.go_gc is None else {"GOGC": str(self.options.go_gc)}

    def _start_nodes(self, pki: PKI) -> None:
        """kwok and its fake nodes (the real-node mode overrides this)."""
        if self.options.kwok_nodes <= 0:
            return
        sup = self.supervisor
        sup.start(
            "kwok",
            [
                self.tools["kwok"],
                "--kubeconfig",
                self.kubeconfig,
                "--config",
                STAGES_FILE,
                "--manage-all-nodes=false",
                "--manage-nodes-with-annotation-selector",
                f"{KWOK_ANNOTATION}=fake",
                "--cidr",
                "10.0.0.1/16",
                "--node-ip",
                "10.0.0.1",
                "--server-address",
                f"127.0.0.1:{self.ports['kwok']}",
            ],
            env=self._go_env(),
        )
        nodes = [self._kwok_node(i) for i in range(self.options.kwok_nodes)]
        self.apply(nodes)
        wait_until(
            f"{len(nodes)} kwok nodes Ready",
            lambda: self._ready_nodes() >= len(nodes),
            self.options.start_timeout,
            sup,
        )

    def _ready_nodes(self) -> int:
        data = self.kubectl_json("get", "nodes")
        ready = 0
        for node in data.get("items", []):
            for cond in node.get("status", {}).get("conditions", []):
                if cond.get("type") == "Ready" and cond.get("status") == "True":
                    ready += 1
        return ready

    def _kwok_node(self, index: int) -> dict[str, Any]:
        name = f"kwok-node-{index}"
        resources = {
            "cpu": self.options.node_cpu,
            "memory": self.options.node_memory,
            "pods": self.options.node_pods,
            "ephemeral-storage": self.options.node_ephemeral_storage,
        }
        return {
            "apiVersion": "v1",
            "kind": "Node",
            "metadata": {
                "name": name,
                "annotations": {KWOK_ANNOTATION: "fake", "node.alpha.kubernetes.io/ttl": "0"},
                "labels": {
                    "kubernetes.io/hostname": name,
                    "kubernetes.io/os": "linux",
                    "kubernetes.io/arch": "amd64",
                    "type": "kwok",
                },
            },
            "status": {
                "allocatable": resources,
                "capacity": resources,
            },
        }


@contextlib.contextmanager
def running_control_plane(options: ClusterOptions | None = None) -> Iterator[ControlPlane]:
    """Start (or reuse) a control plane; tear it down afterwards, logs kept on error."""
    cluster = ControlPlane(options)
    cluster.start()
    failed = False
    try:
        yield cluster
    except BaseException:
        failed = True
        raise
    finally:
        cluster.stop(keep_logs=failed)
