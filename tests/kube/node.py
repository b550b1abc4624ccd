"""Real-node mode: the control plane plus containerd, runc, kubelet, kube-proxy and CNI.

One node per machine (kubelet, containerd and kube-proxy own machine-wide things:
iptables chains, a bridge, cgroups). A second start of the same name reuses the running
cluster; a start under another name while one runs is refused.

Everything it creates lives under its run dir, except what the kernel keeps elsewhere and
teardown removes: the CNI bridge, CNI and kube-proxy iptables chains, /var/run/netns
entries, kubepods cgroups, /var/log/containers links and mounts.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import re
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from .controlplane import SERVICE_CIDR, ClusterOptions, ControlPlane, _kubeconfig
from .images import PAUSE_IMAGE, Docker, ensure_base_image, ensure_pause_image, load_into_containerd
from .pki import PKI
from .procs import free_ports, pid_alive, pid_cmdline, wait_until
from .tools import KubeToolsError, Tools

NODE_NAME = "qforge-node"
POD_CIDR = "10.244.0.0/16"
CNI_NETWORK = "qforge-kube"
CNI_BRIDGE = "qforge0"
CNI_BIN_DIRS = ("/usr/lib/cni", "/opt/cni/bin")
NETNS_DIR = Path("/var/run/netns")
MACHINE_LOCK = Path("/run/qforge-kube-node.json")


def host_ip() -> str:
    """This machine's primary IPv4 address (reachable from pods, unlike loopback)."""
    with contextlib.suppress(OSError), socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.connect(("10.255.255.255", 1))  # no packet is sent; picks the route's source
        ip = str(s.getsockname()[0])
        if not ip.startswith("127."):
            return ip
    out = subprocess.run(
        ["ip", "-4", "-o", "addr", "show", "scope", "global"],
        capture_output=True,
        text=True,
        check=False,
    ).stdout
    m = re.search(r"inet (\d+\.\d+\.\d+\.\d+)/", out)
    if not m:
        raise KubeToolsError("no global IPv4 address on this machine for the real node")
    return m.group(1)


def node_options(name: str = "node") -> ClusterOptions:
    return ClusterOptions(name=name, kwok_nodes=0, bind_address=host_ip(), start_timeout=180)


def _mounts_under(prefixes: tuple[str, ...]) -> list[str]:
    points = []
    with open("/proc/self/mountinfo") as f:
        for line in f:
            point = line.split()[4].replace("\\040", " ")
            if point.startswith(prefixes):
                points.append(point)
    return sorted(set(points), key=len, reverse=True)


class NodeBusy(KubeToolsError):
    """Another real-node cluster runs on this machine (one fits: see _claim_machine)."""


class NodeCluster(ControlPlane):
    """``ControlPlane`` whose node is this machine: pods run in real containers."""

    mode = "node"

    def __init__(self, options: ClusterOptions | None = None, tools: Tools | None = None) -> None:
        super().__init__(options or node_options(), tools)
        self.docker = Docker(self.log_dir)
        # a dockerd we start is one of the cluster's daemons (in its state file, stopped by
        # `down`); one that already ran is shared and left running
        self.docker.supervisor = self.supervisor
        self.containerd_socket = self.run_dir / "containerd" / "containerd.sock"
        self.node_name = NODE_NAME
        self._netns_before: set[str] = set()

    # ------------------------------------------------------------------ public API
    def ctr(
        self, *args: str, timeout: float = 120, check: bool = True
    ) -> subprocess.CompletedProcess[str]:
        argv = ["ctr", "--address", str(self.containerd_socket), "-n", "k8s.io", *args]
        proc = subprocess.run(argv, capture_output=True, text=True, timeout=timeout, check=False)
        if check and proc.returncode != 0:
            raise KubeToolsError(f"ctr {' '.join(args)} failed: {proc.stderr.strip()}")
        return proc

    def build_image(self, context: Path, tag: str, dockerfile: Path | None = None) -> None:
        """``docker build`` (host network) and move the image into the node's containerd."""
        self.docker.build(context, tag, dockerfile, log=self.log_dir / "images.log")
        self.load_images(tag)

    def load_images(self, *refs: str) -> None:
        load_into_containerd(
            self.docker, list(refs), str(self.containerd_socket), self.log_dir / "images.log"
        )

    # ------------------------------------------------------------------ lifecycle
    def start_when_free(self, timeout: float, interval: float = 15.0,
                        on_wait: Callable[[str], None] | None = None) -> None:
        """start(), waiting up to `timeout` s (tried at least once) while another
        suite's real node holds the machine; `on_wait` hears why, before each pause."""
        deadline = time.monotonic() + timeout
        while True:
            try:
                self.start()
                return
            except NodeBusy as exc:
                left = deadline - time.monotonic()
                if left <= 0:
                    raise
                if on_wait is not None:
                    on_wait(str(exc))
                time.sleep(min(interval, left))

    def start(self) -> ControlPlane:
        claimed = self._claim_machine()
        try:
            super().start()
        except BaseException:
            if claimed:
                self._release_machine()
            raise
        return self

    def _claim_machine(self) -> bool:
        """Make this the machine's one real node, atomically, before anything starts.

        Two kubelets on one machine kill each other's pods (each removes pod cgroups it
        does not know), so a second cluster is refused while the first is starting or
        running; a holder whose process is gone and whose cluster is down is cleaned up.
        Returns True when this call wrote the claim (False: same cluster, reused).
        """
        MACHINE_LOCK.parent.mkdir(parents=True, exist_ok=True)
        with open(MACHINE_LOCK.with_suffix(".lock"), "w") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)  # held only for this read-decide-write
            holder: dict[str, Any] = {}
            with contextlib.suppress(OSError, ValueError):
                holder = dict(json.loads(MACHINE_LOCK.read_text()))
            if holder and holder.get("name") != self.options.name:
                other = NodeCluster(
                    ClusterOptions(
                        name=str(holder["name"]),
                        run_root=Path(str(holder["run_dir"])).parent,
                        kwok_nodes=0,
                        bind_address=self.options.bind_address,
                    ),
                    self.tools,
                )
                starter_alive = pid_alive(int(holder.get("pid", 0)))
                if starter_alive or other._try_reuse():
                    raise NodeBusy(
                        f"a real-node cluster {holder['name']!r} already runs on this machine "
                        f"({holder['run_dir']}); one node per machine: stop it first "
                        f"(python -m tests.kube down --node --name {holder['name']})"
                    )
                # it died without teardown: clean it up before taking over
                other.owned = True
                other._cleanup_stale()
                holder = {}
            if holder and pid_alive(int(holder.get("pid", 0))):
                return False  # this cluster's own claim, by a live process: reused
            claim = {"name": self.options.name, "run_dir": str(self.run_dir), "pid": os.getpid()}
            tmp = MACHINE_LOCK.with_suffix(".tmp")
            tmp.write_text(json.dumps(claim))
            tmp.replace(MACHINE_LOCK)
            return True

    def _release_machine(self) -> None:
        with contextlib.suppress(OSError, ValueError):
            holder = json.loads(MACHINE_LOCK.read_text())
            if holder.get("run_dir") == str(self.run_dir):
                MACHINE_LOCK.unlink()

    def _start_nodes(self, pki: PKI) -> None:
        t = self.tools
        sup = self.supervisor
        ip = self.options.bind_address
        timeout = self.options.start_timeout
        self._netns_before = set(os.listdir(NETNS_DIR)) if NETNS_DIR.is_dir() else set()
        images_log = self.log_dir / "images.log"

        # images: dockerd (kept running for builds while the cluster runs)
        t0 = time.monotonic()
        self.docker.start()
        base_tags = ensure_base_image(self.docker, images_log)
        ensure_pause_image(self.docker, t, images_log)
        print(f"   images ready in docker ({time.monotonic() - t0:.0f}s)", file=sys.stderr)

        # containerd with the CRI plugin, its own root/state/socket, our pause image
        cni_bin = next((d for d in CNI_BIN_DIRS if Path(d, "bridge").exists()), None)
        if cni_bin is None:
            raise KubeToolsError(
                "CNI plugins missing (apt-get install containernetworking-plugins)"
            )
        cdir = self.run_dir / "containerd"
        cni_conf = self.run_dir / "cni" / "net.d"
        cni_conf.mkdir(parents=True, exist_ok=True)
        (cdir / "root").mkdir(parents=True, exist_ok=True)
        (cdir / "config.toml").write_text(
            f"""version = 2
root = "{cdir / "root"}"
state = "{cdir / "state"}"
[grpc]
  address = "{self.containerd_socket}"
[ttrpc]
  address = "{self.containerd_socket}.ttrpc"
[plugins."io.containerd.grpc.v1.cri"]
  sandbox_image = "{PAUSE_IMAGE}"
  enable_unprivileged_ports = false
  netns_mounts_under_state_dir = true
  # this machine's root lacks CAP_SYS_RESOURCE: runc cannot lower oom_score_adj below
  # containerd's own, so the kubelet's negative values (-998 for sandboxes) are clamped
  restrict_oom_score_adj = true
  [plugins."io.containerd.grpc.v1.cri".containerd]
    default_runtime_name = "runc"
    [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]
      runtime_type = "io.containerd.runc.v2"
      [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc.options]
        SystemdCgroup = false
  [plugins."io.containerd.grpc.v1.cri".cni]
    bin_dir = "{cni_bin}"
    conf_dir = "{cni_conf}"
"""
        )
        (cni_conf / "10-qforge.conflist").write_text(
            json.dumps(
                {
                    "cniVersion": "1.0.0",
                    "name": CNI_NETWORK,
                    "plugins": [
                        {
                            "type": "bridge",
                            "bridge": CNI_BRIDGE,
                            "isGateway": True,
                            "ipMasq": True,
                            "hairpinMode": True,
                            "ipam": {
                                "type": "host-local",
                                "ranges": [[{"subnet": POD_CIDR}]],
                                "routes": [{"dst": "0.0.0.0/0"}],
                                "dataDir": str(self.run_dir / "cni" / "ipam"),
                            },
                        },
                        {"type": "portmap", "capabilities": {"portMappings": True}},
                    ],
                },
                indent=2,
            )
        )
        sup.start("containerd", ["containerd", "--config", cdir / "config.toml"])
        wait_until(
            "containerd",
            lambda: self.ctr("version", check=False, timeout=10).returncode == 0,
            timeout,
            sup,
        )
        t0 = time.monotonic()
        self.load_images(*base_tags, PAUSE_IMAGE)
        print(f"   images moved into containerd ({time.monotonic() - t0:.0f}s)", file=sys.stderr)

        # kubelet: node identity for the Node authorizer, serving cert for logs/exec
        kubelet_port, kubelet_healthz, proxy_healthz, proxy_metrics = free_ports(4)
        pair = pki.issue("kubelet", f"system:node:{self.node_name}", ("system:nodes",))
        serving = pki.issue(
            "kubelet-serving", self.node_name, dns=(self.node_name,), ips=(ip,), server=True
        )
        kubelet_kc = self.run_dir / "kubelet.kubeconfig"
        kubelet_kc.write_text(json.dumps(_kubeconfig(self.server, pki.ca.cert, "kubelet", pair)))
        kdir = self.run_dir / "kubelet"
        kdir.mkdir(parents=True, exist_ok=True)
        config: dict[str, Any] = {
            "apiVersion": "kubelet.config.k8s.io/v1beta1",
            "kind": "KubeletConfiguration",
            "address": ip,
            "port": kubelet_port,
            "readOnlyPort": 0,
            "healthzBindAddress": "127.0.0.1",
            "healthzPort": kubelet_healthz,
            "tlsCertFile": str(serving.cert),
            "tlsPrivateKeyFile": str(serving.key),
            "authentication": {
                "anonymous": {"enabled": False},
                "webhook": {"enabled": True},
                "x509": {"clientCAFile": str(pki.ca.cert)},
            },
            "authorization": {"mode": "Webhook"},
            "cgroupDriver": "cgroupfs",
            "failCgroupV1": False,
            "failSwapOn": False,
            "containerRuntimeEndpoint": f"unix://{self.containerd_socket}",
            "podLogsDir": str(self.run_dir / "pod-logs"),
            "volumePluginDir": str(self.run_dir / "volume-plugins"),
            "clusterDomain": "cluster.local",
            "resolvConf": "/etc/resolv.conf",
            "serializeImagePulls": False,
            "rotateCertificates": False,
            "evictionHard": {
                "memory.available": "100Mi",
                "nodefs.available": "1%",
                "imagefs.available": "1%",
                "nodefs.inodesFree": "1%",
            },
            "imageGCHighThresholdPercent": 100,
            "imageGCLowThresholdPercent": 99,
            "maxPods": 110,
        }
        (kdir / "config.json").write_text(json.dumps(config, indent=2))
        sup.start(
            "kubelet",
            [
                t["kubelet"],
                "--config",
                kdir / "config.json",
                "--kubeconfig",
                kubelet_kc,
                "--root-dir",
                kdir,
                "--cert-dir",
                kdir / "pki",
                "--hostname-override",
                self.node_name,
                "--node-ip",
                ip,
            ],
        )

        # kube-proxy (iptables): pods reach the API through the `kubernetes` Service
        proxy = pki.issue("kube-proxy", "system:kube-proxy")
        proxy_kc = self.run_dir / "kube-proxy.kubeconfig"
        proxy_kc.write_text(json.dumps(_kubeconfig(self.server, pki.ca.cert, "kube-proxy", proxy)))
        sup.start(
            "kube-proxy",
            [
                t["kube-proxy"],
                "--kubeconfig",
                proxy_kc,
                "--proxy-mode",
                "iptables",
                "--hostname-override",
                self.node_name,
                "--cluster-cidr",
                POD_CIDR,
                "--healthz-bind-address",
                f"127.0.0.1:{proxy_healthz}",
                "--metrics-bind-address",
                f"127.0.0.1:{proxy_metrics}",
                "--conntrack-max-per-core",
                "0",
                "--iptables-localhost-nodeports=false",
            ],
        )
        self.ports.update(
            {
                "kubelet": kubelet_port,
                "kubelet-healthz": kubelet_healthz,
                "kube-proxy-healthz": proxy_healthz,
            }
        )
        wait_until(
            f"node {self.node_name} Ready",
            lambda: self._ready_nodes() >= 1,
            timeout,
            sup,
            interval=1,
        )
        wait_until(
            "kube-proxy healthz",
            lambda: _http_ok(f"http://127.0.0.1:{proxy_healthz}/healthz"),
            timeout,
            sup,
        )
        print(
            f"   service network {SERVICE_CIDR}, pod network {POD_CIDR} on {CNI_BRIDGE}",
            file=sys.stderr,
        )

    # ------------------------------------------------------------------ teardown
    def _before_stop(self) -> None:
        """Delete every pod through the kubelet, so CNI releases addresses and rules."""
        if not self.healthy():
            return
        self.kubectl(
            "delete",
            "pods",
            "--all",
            "--all-namespaces",
            "--grace-period=1",
            "--wait=false",
            check=False,
            timeout=60,
        )

        def node_empty() -> bool:
            # no pod left in the API, no container running, the CNI teardown done
            pods = self.kubectl("get", "pods", "-A", "-o", "name", check=False, timeout=20)
            tasks = self.ctr("tasks", "ls", "-q", check=False, timeout=10).stdout.strip()
            return not pods.stdout.strip() and not tasks and not _cni_nat_rules()

        with contextlib.suppress(KubeToolsError):
            wait_until("pods gone from the node", node_empty, 60, interval=1)

    def _after_stop(self) -> None:
        self._cleanup_host(self.run_dir)
        self._release_machine()

    def _cleanup_extra(self, state: dict[str, Any]) -> None:
        self._cleanup_host(self.run_dir)

    def _cleanup_host(self, run_dir: Path) -> None:
        sock = str(run_dir / "containerd" / "containerd.sock")
        # containerd shims of ours (they daemonize out of containerd's process group)
        for pid_dir in Path("/proc").glob("[0-9]*"):
            cmd = pid_cmdline(int(pid_dir.name))
            if cmd and "containerd-shim" in cmd[0] and sock in cmd:
                with contextlib.suppress(ProcessLookupError, PermissionError):
                    os.kill(int(pid_dir.name), 9)
        # iptables: kube-proxy's own cleanup, then the CNI plugin's masquerade chains
        kube_proxy = self.tools["kube-proxy"]
        with contextlib.suppress(subprocess.TimeoutExpired):
            subprocess.run(
                [str(kube_proxy), "--cleanup"], capture_output=True, timeout=60, check=False
            )
        self._cleanup_cni_iptables()
        self._cleanup_kubelet_iptables()
        # network: the bridge and the pod network namespaces containerd made
        subprocess.run(["ip", "link", "delete", CNI_BRIDGE], capture_output=True, check=False)
        if NETNS_DIR.is_dir():
            for ns in set(os.listdir(NETNS_DIR)) - self._netns_before:
                if ns.startswith("cni-"):
                    subprocess.run(
                        ["umount", str(NETNS_DIR / ns)], capture_output=True, check=False
                    )
                    with contextlib.suppress(OSError):
                        (NETNS_DIR / ns).unlink()
        # mounts under the run dir (volumes, rootfs, shm), deepest first
        for point in _mounts_under((str(run_dir) + "/",)):
            subprocess.run(["umount", "-l", point], capture_output=True, check=False)
        # cgroups the kubelet made (empty once every container is gone)
        for ctl in Path("/sys/fs/cgroup").iterdir():
            top = ctl / "kubepods"
            if top.is_dir():
                for d in sorted(
                    (p for p in top.rglob("*") if p.is_dir()),
                    key=lambda p: len(p.parts),
                    reverse=True,
                ):
                    with contextlib.suppress(OSError):
                        d.rmdir()
                with contextlib.suppress(OSError):
                    top.rmdir()
        # kubelet's legacy log links point into our pod-logs dir
        logs = Path("/var/log/containers")
        if logs.is_dir():
            for link in logs.iterdir():
                with contextlib.suppress(OSError):
                    if link.is_symlink() and os.readlink(link).startswith(str(run_dir)):
                        link.unlink()

    def _cleanup_cni_iptables(self) -> None:
        """The bridge plugin's masquerade rules and chains of our network, if any remain."""
        for line in _cni_nat_rules():
            parts = line.split()
            if parts[1] == "POSTROUTING":
                subprocess.run(
                    ["iptables", "-t", "nat", "-D", *_split_rule(line[3:])],
                    capture_output=True,
                    check=False,
                )
        chains = {
            line.split()[1] for line in _cni_nat_rules() if line.split()[1].startswith("CNI-")
        }
        for chain in chains:
            for op in ("-F", "-X"):
                subprocess.run(
                    ["iptables", "-t", "nat", op, chain], capture_output=True, check=False
                )

    def _cleanup_kubelet_iptables(self) -> None:
        """The kubelet's own chains (canary, hint, firewall), which kube-proxy leaves."""
        for cmd in ("iptables", "ip6tables"):
            for table in ("mangle", "nat", "filter"):
                save = subprocess.run(
                    [f"{cmd}-save", "-t", table], capture_output=True, text=True, check=False
                ).stdout
                for line in save.splitlines():
                    if line.startswith("-A ") and "-j KUBE-" in line:
                        rule = _split_rule(line[3:])
                        subprocess.run(
                            [cmd, "-t", table, "-D", *rule], capture_output=True, check=False
                        )
                for line in save.splitlines():
                    if line.startswith(":KUBE-"):
                        chain = line[1:].split()[0]
                        subprocess.run(
                            [cmd, "-t", table, "-F", chain], capture_output=True, check=False
                        )
                        subprocess.run(
                            [cmd, "-t", table, "-X", chain], capture_output=True, check=False
                        )

    def _stop_owned(self, keep: bool) -> None:
        state = self._read_state() or {}
        names = [d.name for d in self.supervisor.daemons] or [
            str(d.get("name")) for d in state.get("daemons", [])
        ]
        super()._stop_owned(keep)
        if "dockerd" in names:
            self.docker.cleanup()
        if keep:
            # keep the logs, drop the container filesystems (large)
            shutil.rmtree(self.run_dir / "containerd", ignore_errors=True)


def _cni_nat_rules() -> list[str]:
    """``-A`` lines of the nat table whose comment names our CNI network."""
    save = subprocess.run(
        ["iptables-save", "-t", "nat"], capture_output=True, text=True, check=False
    ).stdout
    # iptables-save escapes the quotes inside a comment: name: \"qforge-kube\"
    tag = f'name: "{CNI_NETWORK}"'
    return [
        line
        for line in save.splitlines()
        if line.startswith("-A ") and tag in line.replace('\\"', '"')
    ]


def _http_ok(url: str) -> bool:
    import urllib.request

    with urllib.request.urlopen(url, timeout=3) as resp:
        return int(resp.status) == 200


def _split_rule(rule: str) -> list[str]:
    import shlex

    return shlex.split(rule)


def leftovers(run_dir: Path) -> list[str]:
    """What the real node under ``run_dir`` left behind after its teardown ([]: nothing).

    Machine-wide things (bridge, iptables chains, kubepods cgroups) are only checked when
    no other real-node cluster holds the machine (one may start right after ours stops).
    """
    found = []
    names = ("kubelet", "kube-proxy", "containerd", "containerd-shim-runc-v2", "dockerd")
    for pid_dir in Path("/proc").glob("[0-9]*"):
        cmd = pid_cmdline(int(pid_dir.name))
        if cmd and Path(cmd[0]).name in names and any(str(run_dir) in c for c in cmd):
            found.append(f"process {pid_dir.name}: {' '.join(cmd)[:120]}")
    for point in _mounts_under((str(run_dir) + "/",)):
        found.append(f"mount {point}")
    if MACHINE_LOCK.exists():
        return found
    link = subprocess.run(["ip", "link", "show", CNI_BRIDGE], capture_output=True, check=False)
    if link.returncode == 0:
        found.append(f"network interface {CNI_BRIDGE}")
    for cmd_name in ("iptables-save", "ip6tables-save"):
        save = subprocess.run([cmd_name], capture_output=True, text=True, check=False).stdout
        for line in save.splitlines():
            unescaped = line.replace('\\"', '"')
            if line.startswith((":KUBE-", ":CNI-")) or f'name: "{CNI_NETWORK}"' in unescaped:
                found.append(f"{cmd_name} {line.strip()[:100]}")
    for ctl in Path("/sys/fs/cgroup").iterdir():
        if (ctl / "kubepods").exists():
            found.append(f"cgroup {ctl / 'kubepods'}")
    return found
