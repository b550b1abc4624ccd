#!/usr/bin/env bash
# The steps of the kind end-to-end run, shared by .github/workflows/e2e.yaml (one step
# per subcommand) and `make e2e-kind` (`all`, on a node image built here), so the two
# cannot drift.
#
#   tools/kind/e2e.sh install-kind   go install kind $KIND_VERSION (the workflow only)
#   tools/kind/e2e.sh create         kind create cluster --image $KIND_NODE_IMAGE
#   tools/kind/e2e.sh images         both images built from the repo's Dockerfiles
#   tools/kind/e2e.sh load           kind load docker-image (both images)
#   tools/kind/e2e.sh test           tests/e2e with QFORGE_E2E_LOAD=kind
#   tools/kind/e2e.sh dump           on failure: kubectl get/describe/logs, jobs' metadata,
#                                    kind export logs, under $QFORGE_E2E_ARTIFACTS
#   tools/kind/e2e.sh delete         kind delete cluster (always)
#   tools/kind/e2e.sh all            create, images, load, test; dump on failure; delete
#
# Settings (environment): CLUSTER (qforge-e2e), KIND_NODE_IMAGE (required by create),
# KIND_CONFIG (a kind cluster config, optional), KUBECONFIG (default ~/.kube/config),
# PYTHON (python), QFORGE_E2E_RUNNER_IMAGE / QFORGE_E2E_CONTROLLER_IMAGE,
# QFORGE_E2E_ARTIFACTS (./e2e-artifacts).
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/../.."
CLUSTER="${CLUSTER:-qforge-e2e}"
RUNNER="${QFORGE_E2E_RUNNER_IMAGE:-qforge-runner:e2e}"
CONTROLLER="${QFORGE_E2E_CONTROLLER_IMAGE:-qforge-controller:e2e}"
ARTIFACTS="${QFORGE_E2E_ARTIFACTS:-$PWD/e2e-artifacts}"
export KUBECONFIG="${KUBECONFIG:-$HOME/.kube/config}"
export QFORGE_E2E_LOAD=kind QFORGE_E2E_RUNNER_IMAGE="$RUNNER" QFORGE_E2E_CONTROLLER_IMAGE="$CONTROLLER"
export QFORGE_E2E_ARTIFACTS="$ARTIFACTS" DOCKER_BUILDKIT="${DOCKER_BUILDKIT:-0}"

install_kind() {
  go install "sigs.k8s.io/kind@${KIND_VERSION:?KIND_VERSION is not set}"
  if [[ -n "${GITHUB_PATH:-}" ]]; then echo "$(go env GOPATH)/bin" >>"$GITHUB_PATH"; fi
}

create() {
  local config=()
  [[ -z "${KIND_CONFIG:-}" ]] || config=(--config "$KIND_CONFIG")
  kind create cluster --name "$CLUSTER" --image "${KIND_NODE_IMAGE:?KIND_NODE_IMAGE is not set}" \
    "${config[@]}" --wait 120s
  kubectl version
  kubectl get nodes -o wide
}

images() {
  # the host network: the same build wherever dockerd has no default bridge
  docker build --network host -f Dockerfile.runner -t "$RUNNER" .
  docker build --network host -f Dockerfile.controller -t "$CONTROLLER" .
  docker image ls 'qforge-*'
}

load() {
  kind load docker-image --name "$CLUSTER" "$RUNNER" "$CONTROLLER"
}

run_tests() {
  export QFORGE_E2E_KUBECONFIG="$KUBECONFIG"
  "${PYTHON:-python}" -m pytest -v -p no:cacheprovider --timeout=1800 --durations=0 tests/e2e
}

dump() {
  mkdir -p "$ARTIFACTS/final"
  (
    cd "$ARTIFACTS/final"
    kubectl get all,jobs,pvc,pv,events -A -o wide >get.txt 2>&1 || true
    kubectl -n qforge-e2e describe jobs,pods >describe.txt 2>&1 || true
    kubectl -n qforge-e2e logs deploy/qforge --tail=-1 >controller.log 2>&1 || true
    kubectl -n qforge-e2e logs deploy/qforge --previous --tail=-1 >controller-previous.log 2>&1 || true
    for pod in $(kubectl -n qforge-e2e get pods -l app.kubernetes.io/component=runner -o name 2>/dev/null); do
      kubectl -n qforge-e2e logs "$pod" >"runner-${pod#pod/}.log" 2>&1 || true
    done
    # shellcheck disable=SC2016  # expanded by the shell inside the pod
    kubectl -n qforge-e2e exec deploy/qforge -- sh -c \
      'for f in /jobs/*/metadata.json; do echo "== $f"; cat "$f"; echo; done' >metadata.txt 2>&1 || true
    kind export logs --name "$CLUSTER" "$ARTIFACTS/kind-logs" >/dev/null 2>&1 || true
    tail -n 50 get.txt controller.log || true
  )
  echo "e2e: cluster state dumped under $ARTIFACTS" >&2
}

delete() {
  kind delete cluster --name "$CLUSTER" || true
}

step() {  # step NAME FUNCTION: a banner, the time it took, its exit status
  local start=$SECONDS rc=0
  echo ">> e2e-kind: $1"
  "$2" || rc=$?
  local outcome="done"
  [[ $rc -eq 0 ]] || outcome="FAILED (exit $rc)"
  echo ">> e2e-kind: $1: $outcome in $((SECONDS - start))s"
  return "$rc"
}

all() {
  local rc=0 start=$SECONDS
  trap 'delete' EXIT  # also when interrupted
  step create create && step images images && step load load && step test run_tests || rc=$?
  if [[ $rc -ne 0 ]]; then step dump dump || true; fi
  step delete delete
  trap - EXIT
  echo ">> e2e-kind: $([[ $rc -eq 0 ]] && echo passed || echo FAILED) in $((SECONDS - start))s"
  return "$rc"
}

main() {
  case "${1:-}" in
    install-kind) install_kind ;;
    create) create ;;
    images) images ;;
    load) load ;;
    test) run_tests ;;
    dump) dump ;;
    delete) delete ;;
    all) all ;;
    *) sed -n '2,19p' "$0" | sed 's/^# \{0,1\}//' >&2; exit 2 ;;
  esac
}

# one line, read whole before it runs: editing this file during a run cannot change it
main "$@"; exit
