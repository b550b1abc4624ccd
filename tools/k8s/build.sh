#!/usr/bin/env bash
# Build (or reuse) the real-Kubernetes test tooling from the Go module proxy.
#
#   tools/k8s/build.sh [COMPONENT...]      build what is missing (default: all)
#   tools/k8s/build.sh --bin-dir COMPONENT print the cache folder holding its binaries
#   tools/k8s/build.sh --list              print "component version bin-dir" lines
#   tools/k8s/build.sh --list-kind         the same for the kind node image's parts
#
# Components: kubernetes (kube-apiserver, kube-controller-manager, kube-scheduler,
# kubelet, kube-proxy, kubectl, and the pause binary compiled from the C source that
# ships in the Kubernetes module), etcd, kwok, helm, actionlint, karpenter (Karpenter's
# KWOK cloud provider, binary `karpenter`, with its CRDs in <cache>/karpenter-<v>/crds).
# Built only when named (the kind node image, tools/kind/): kind, kubeadm, crictl,
# coredns, local-path-provisioner.
#
# Pins live in tools/k8s/versions.env. Binaries go to
# ${QFORGE_CACHE:-/var/cache/qforge}/k8s/<component>-<version>/bin, outside the checkout;
# a component is rebuilt only when its pin changes (or its folder is removed).
# Build logs: ${QFORGE_CACHE}/k8s/logs/<component>-<version>.log.
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
# shellcheck source=versions.env
source "$HERE/versions.env"
CACHE="${QFORGE_CACHE:-/var/cache/qforge}/k8s"
LOGS="$CACHE/logs"
ALL=(kubernetes etcd kwok helm actionlint karpenter)
KIND_PARTS=(kind kubeadm crictl coredns local-path-provisioner)  # not in ALL: `make kind-image`

version_of() {
  case "$1" in
    kubernetes) echo "$KUBERNETES_VERSION" ;;
    etcd) echo "$ETCD_VERSION" ;;
    kwok) echo "$KWOK_VERSION" ;;
    helm) echo "$HELM_VERSION" ;;
    actionlint) echo "$ACTIONLINT_VERSION" ;;
    karpenter) echo "$KARPENTER_VERSION" ;;
    kind) echo "$KIND_VERSION" ;;
    kubeadm) echo "$KUBERNETES_VERSION" ;;
    crictl) echo "$CRICTL_VERSION" ;;
    coredns) echo "$COREDNS_VERSION" ;;
    local-path-provisioner) echo "$LOCAL_PATH_PROVISIONER_VERSION" ;;
    *) echo "unknown component '$1' (known: ${ALL[*]} ${KIND_PARTS[*]})" >&2; return 2 ;;
  esac
}

binaries_of() {
  case "$1" in
    kubernetes) echo "kube-apiserver kube-controller-manager kube-scheduler kubelet kube-proxy kubectl pause" ;;
    *) echo "$1" ;;
  esac
}

dir_of() { echo "$CACHE/$1-$(version_of "$1")"; }

is_built() {
  local dir b
  dir="$(dir_of "$1")"
  [[ -f "$dir/.complete" ]] || return 1
  for b in $(binaries_of "$1"); do [[ -x "$dir/bin/$b" ]] || return 1; done
  if [[ "$1" == karpenter ]]; then [[ -f "$dir/crds/karpenter.sh_nodepools.yaml" ]] || return 1; fi
}

case "${1:-}" in
  --bin-dir) version_of "${2:?--bin-dir needs a component}" >/dev/null; echo "$(dir_of "$2")/bin"; exit 0 ;;
  --list) for c in "${ALL[@]}"; do echo "$c $(version_of "$c") $(dir_of "$c")/bin"; done; exit 0 ;;
  --list-kind) for c in "${KIND_PARTS[@]}"; do echo "$c $(version_of "$c") $(dir_of "$c")/bin"; done; exit 0 ;;
  -h|--help) sed -n '2,19p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
esac

command -v go >/dev/null || { echo "k8s-tools: 'go' is not on PATH; the binaries are built with Go" >&2; exit 1; }
mkdir -p "$CACHE" "$LOGS"

# ---- progress: a heartbeat while a long step runs --------------------------------------
fmt_secs() { printf '%dm%02ds' $(($1 / 60)) $(($1 % 60)); }

# run_step LABEL LOG CMD...: run CMD with output appended to LOG, print a line every 20 s
# (elapsed time and how many packages Go has compiled so far), fail with the log's tail.
run_step() {
  local label="$1" log="$2"; shift 2
  local start=$SECONDS pid rc
  echo "   - $label" >>"$log"
  ("$@") >>"$log" 2>&1 &
  pid=$!
  while kill -0 "$pid" 2>/dev/null; do
    for _ in $(seq 1 20); do kill -0 "$pid" 2>/dev/null || break; sleep 1; done
    if kill -0 "$pid" 2>/dev/null; then
      printf '     ... %s: %s, %s log lines (%s)\n' "$label" "$(fmt_secs $((SECONDS - start)))" \
        "$(wc -l <"$log")" "$log"
    fi
  done
  rc=0; wait "$pid" || rc=$?
  if [[ $rc -ne 0 ]]; then
    echo "k8s-tools: FAILED: $label (exit $rc). Last lines of the log $log:" >&2
    tail -n 25 "$log" | sed 's/^/    | /' >&2
    exit "$rc"  # builders run in a subshell: this ends the component's build
  fi
}

# ---- one builder per component --------------------------------------------------------
# Each writes its binaries into "$OUT" (a temporary bin folder) and works in "$WORK".

# kubernetes_wrapper: in "$WORK", a module requiring k8s.io/kubernetes $KUBERNETES_VERSION
# with its staging modules replaced by their published versions; sets LDFLAGS (the version
# fields hack/lib/version.sh sets, so the binaries report their real version).
kubernetes_wrapper() {
  local v="$KUBERNETES_VERSION" minor major gomod date key
  major="${v#v}"; major="${major%%.*}"
  minor="$(echo "$v" | cut -d. -f2)"
  local patch; patch="$(echo "$v" | cut -d. -f3)"
  cd "$WORK"
  printf 'module qforge.local/k8s-build\n\ngo 1.24.0\n\nrequire k8s.io/kubernetes %s\n' "$v" >go.mod
  run_step "download k8s.io/kubernetes $v" "$LOG" go mod download k8s.io/kubernetes@"$v"
  gomod="$(go mod download -json k8s.io/kubernetes@"$v" | sed -n 's/.*"GoMod": "\(.*\)".*/\1/p')"
  [[ -f "$gomod" ]] || { echo "k8s.io/kubernetes $v: no go.mod in the module cache" | tee -a "$LOG" >&2; exit 1; }
  # k8s.io/kubernetes replaces its ~30 staging modules with ./staging/...; a dependent module
  # must replace each of them with its published v0.<minor>.<patch> instead.
  {
    echo
    echo "replace ("
    sed -n 's#^[[:space:]]*\(k8s\.io/[a-z0-9-]*\) => \./staging/src/.*#\1#p' "$gomod" | sort -u |
      while read -r m; do echo "	$m => $m v0.$minor.$patch"; done
    echo ")"
  } >>go.mod
  echo "   wrapper go.mod: $(grep -c '=> k8s.io' go.mod) staging modules replaced by v0.$minor.$patch" >>"$LOG"
  date="$(sed -n 's/.*"Time":"\([^"]*\)".*/\1/p' "$(dirname "$gomod")/$v.info")"
  LDFLAGS=""
  for key in client-go/pkg/version component-base/version; do
    LDFLAGS+=" -X k8s.io/$key.gitVersion=$v -X k8s.io/$key.gitMajor=$major"
    LDFLAGS+=" -X k8s.io/$key.gitMinor=$minor -X k8s.io/$key.gitTreeState=clean"
    LDFLAGS+=" -X k8s.io/$key.buildDate=${date:-1970-01-01T00:00:00Z}"
  done
}

build_kubernetes() {
  local v="$KUBERNETES_VERSION" pkgs=() c
  kubernetes_wrapper
  for c in kube-apiserver kube-controller-manager kube-scheduler kubelet kube-proxy kubectl; do
    pkgs+=("k8s.io/kubernetes/cmd/$c")
  done
  # pkg@version: a bare `go get pkg` would upgrade k8s.io/kubernetes to its latest release
  run_step "resolve modules (go get)" "$LOG" go get "${pkgs[@]/%/@$v}"
  run_step "go build ${pkgs[*]##*/} (cold: tens of minutes)" "$LOG" \
    go build -v -ldflags "$LDFLAGS" -o "$OUT/" "${pkgs[@]}"
  # The pod sandbox ("pause") binary, compiled from the source shipped in the module.
  local src
  src="$(go env GOMODCACHE)/k8s.io/kubernetes@$v/build/pause/linux/pause.c"
  run_step "gcc -static pause.c" "$LOG" \
    gcc -Os -Wall -Werror -static -DVERSION="$v-qforge" -o "$OUT/pause" "$src"
}

# kubeadm (for the kind node image): the same wrapper module as the other components, so
# it reuses their module and build caches; `kubeadm version` must print the real version.
build_kubeadm() {
  local v="$KUBERNETES_VERSION"
  kubernetes_wrapper
  run_step "resolve modules (go get)" "$LOG" go get "k8s.io/kubernetes/cmd/kubeadm@$v"
  run_step "go build kubeadm" "$LOG" \
    env CGO_ENABLED=0 go build -v -ldflags "$LDFLAGS" -o "$OUT/" k8s.io/kubernetes/cmd/kubeadm
}

build_etcd() {
  cd "$WORK"
  printf 'module qforge.local/etcd-build\n\ngo 1.24\n\nrequire go.etcd.io/etcd/server/v3 %s\n' \
    "$ETCD_VERSION" >go.mod
  cp "$HERE/etcd/main.go.tmpl" main.go
  run_step "resolve modules (go mod tidy)" "$LOG" go mod tidy
  run_step "go build etcd" "$LOG" go build -v -o "$OUT/etcd" .
}

go_install() {  # go_install LABEL PACKAGE@VERSION [go install flags...]
  local label="$1" pkg="$2"; shift 2
  run_step "$label" "$LOG" env GOBIN="$OUT" ${CGO_ENABLED:+CGO_ENABLED=$CGO_ENABLED} go install -v "$@" "$pkg"
}

build_kwok() { go_install "go install kwok" "sigs.k8s.io/kwok/cmd/kwok@$KWOK_VERSION"; }
build_helm() {
  go_install "go install helm" "helm.sh/helm/v3/cmd/helm@$HELM_VERSION" \
    -ldflags "-X helm.sh/helm/v3/internal/version.version=$HELM_VERSION -X helm.sh/helm/v3/internal/version.gitTreeState=clean"
}
build_actionlint() {
  go_install "go install actionlint" "github.com/rhysd/actionlint/cmd/actionlint@$ACTIONLINT_VERSION"
}
# The kind node image's parts (tools/kind/build.sh): static binaries, they run in images.
build_kind() { go_install "go install kind" "sigs.k8s.io/kind@$KIND_VERSION"; }
# crictl, coredns and local-path-provisioner run in images: linked statically.
build_crictl() {
  local CGO_ENABLED=0
  go_install "go install crictl" "sigs.k8s.io/cri-tools/cmd/crictl@$CRICTL_VERSION" \
    -ldflags "-X sigs.k8s.io/cri-tools/pkg/version.Version=${CRICTL_VERSION#v}"
}
build_coredns() {
  local CGO_ENABLED=0
  go_install "go install coredns (cold: minutes)" "github.com/coredns/coredns@$COREDNS_VERSION" \
    -ldflags "-X github.com/coredns/coredns/coremain.GitCommit=$COREDNS_VERSION"
}
build_local-path-provisioner() {
  local CGO_ENABLED=0
  go_install "go install local-path-provisioner" \
    "github.com/rancher/local-path-provisioner@$LOCAL_PATH_PROVISIONER_VERSION" \
    -ldflags "-X main.VERSION=$LOCAL_PATH_PROVISIONER_VERSION"
}

# Karpenter's KWOK cloud provider (sigs.k8s.io/karpenter/kwok): the autoscaler the
# autoscaling tests run. Its go.mod asks for a newer Go than Debian's, so the go command
# fetches the pinned toolchain from the module proxy. The main package is named kwok: the
# binary is renamed `karpenter` (it is not the kwok node simulator). Its CRDs ship in the
# module zip; they are copied next to the binary (<cache>/karpenter-<v>/crds).
build_karpenter() {
  export GOTOOLCHAIN="$KARPENTER_GOTOOLCHAIN"
  local v="$KARPENTER_VERSION" src crds
  go_install "go install sigs.k8s.io/karpenter/kwok ($GOTOOLCHAIN)" "sigs.k8s.io/karpenter/kwok@$v"
  mv "$OUT/kwok" "$OUT/karpenter"
  src="$(go env GOMODCACHE)/sigs.k8s.io/karpenter@$v"
  crds="$(dirname "$OUT")/crds"
  mkdir -p "$crds"
  cp "$src"/kwok/charts/crds/*.yaml "$src"/kwok/apis/crds/*.yaml "$crds/"
  chmod u+w "$crds"/*.yaml  # the module cache is read-only
  echo "   CRDs: $(cd "$crds" && echo *.yaml)" >>"$LOG"
}

build_one() {
  local comp="$1" v dir start
  v="$(version_of "$comp")"; dir="$(dir_of "$comp")"
  if is_built "$comp"; then
    echo ">> $comp $v: cached ($dir/bin)"
    return 0
  fi
  LOG="$LOGS/$comp-$v.log"; WORK="$CACHE/.work/$comp-$v"; OUT="$dir.tmp/bin"
  rm -rf "$WORK" "$dir.tmp"; mkdir -p "$WORK" "$OUT"
  : >"$LOG"
  echo ">> $comp $v: building (log: $LOG)"
  start=$SECONDS
  if ! ( "build_$comp" ); then
    echo "k8s-tools: $comp $v was not built (log: $LOG)" >&2
    exit 1
  fi
  rm -rf "$dir"; mv "$dir.tmp" "$dir"
  printf 'component=%s\nversion=%s\n%s\nbuilt=%s\nseconds=%s\n' "$comp" "$v" "$(go version)" \
    "$(date -u +%FT%TZ)" $((SECONDS - start)) >"$dir/.complete"
  rm -rf "$WORK"
  echo ">> $comp $v: built in $(fmt_secs $((SECONDS - start))) -> $dir/bin"
}

want=("$@"); [[ ${#want[@]} -gt 0 ]] || want=("${ALL[@]}")
for c in "${want[@]}"; do version_of "$c" >/dev/null || exit 2; done

# All cached: nothing to build, so no lock to wait for (`make helm` returns at once while
# another run builds the other components: tools/ci/tiers.py).
missing=0
for c in "${want[@]}"; do is_built "$c" || missing=1; done
if [[ $missing -eq 0 ]]; then
  for c in "${want[@]}"; do echo ">> $c $(version_of "$c"): cached ($(dir_of "$c")/bin)"; done
  exit 0
fi

# One build at a time per cache (two `make` runs must not build into the same folder).
exec 9>"$CACHE/.build.lock"
if ! flock -n 9; then
  echo ">> another k8s-tools build holds $CACHE/.build.lock; waiting for it (up to 90 min)"
  flock -w 5400 9 || { echo "k8s-tools: gave up waiting for $CACHE/.build.lock" >&2; exit 1; }
fi

total=$SECONDS
for c in "${want[@]}"; do
  build_one "$c"
done
echo ">> k8s-tools ready in $(fmt_secs $((SECONDS - total)))"
