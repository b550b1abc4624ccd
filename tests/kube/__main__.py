"""By-hand test clusters: ``python -m tests.kube up|down|status [--name NAME] [--node]``.

``up`` starts (or reuses) a cluster that keeps running after the command returns and
prints its kubeconfig path; ``down`` stops it and removes its folder.
"""

from __future__ import annotations

import argparse
import sys

from .controlplane import ClusterOptions, ControlPlane
from .tools import KubeToolsError, find_tools


def _cluster(name: str, node: bool, autoscale: bool = False) -> ControlPlane:
    tools = find_tools()
    if autoscale:
        from .autoscale import AutoscaleCluster, AutoscaleOptions

        return AutoscaleCluster(AutoscaleOptions(name=name), tools)
    if node:
        from .node import NodeCluster, node_options

        return NodeCluster(node_options(name), tools)
    return ControlPlane(ClusterOptions(name=name), tools)


def _images() -> int:
    """Build the base image (debootstrap) and the pause image into our dockerd's store."""
    from .images import Docker, ensure_base_image, ensure_pause_image, images_cache

    tools = find_tools()
    log_dir = images_cache() / "logs"
    docker = Docker(log_dir)
    docker.start()
    try:
        tags = ensure_base_image(docker, log_dir / "images.log")
        pause = ensure_pause_image(docker, tools, log_dir / "images.log")
    finally:
        docker.stop()
    print(f"images ready (docker data root {docker.data_root}): {' '.join([*tags, pause])}")
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m tests.kube",
        description=__doc__,
        epilog="images: build the debootstrap base and the pause image",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("command", choices=["up", "down", "status", "images"])
    parser.add_argument("--name", default="dev", help="cluster name (default: dev)")
    parser.add_argument(
        "--node",
        action="store_true",
        help="real-node mode: containerd, kubelet and kube-proxy instead of kwok",
    )
    parser.add_argument(
        "--autoscale",
        action="store_true",
        help="autoscaling mode: no runner node; Karpenter's KWOK provider creates them",
    )
    args = parser.parse_args(argv)
    try:
        if args.command == "images":
            return _images()
        cluster = _cluster(args.name, args.node, args.autoscale)
        if args.command == "up":
            cluster.start()
            how = "reused the running" if cluster.reused else "started"
            print(
                f"{how} cluster {args.name!r} ({cluster.mode}), API {cluster.server}",
                file=sys.stderr,
            )
            print(f"export KUBECONFIG={cluster.kubeconfig}", file=sys.stderr)
            print(cluster.kubeconfig)
        elif args.command == "down":
            if not cluster.adopt():
                print(f"no cluster {args.name!r} under {cluster.run_dir}", file=sys.stderr)
                return 0
            cluster.stop()
            print(f"cluster {args.name!r} stopped", file=sys.stderr)
        else:
            state = cluster._read_state()
            if state and cluster._try_reuse():
                print(f"cluster {args.name!r} ({state.get('mode')}) running: {cluster.server}")
                print(cluster.kubeconfig)
            else:
                print(f"cluster {args.name!r}: not running")
                return 1
    except KubeToolsError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
