#!/usr/bin/env bash
# Builds the real control plane that tests/realk8s runs the sync against: kube-apiserver,
# kube-controller-manager, kube-scheduler and kubectl from k8s.io/kubernetes, etcd and etcdctl,
# KWOK, and metrics-server (served through the apiserver's aggregation layer, scraping KWOK's
# simulated kubelet metrics), all from the Go module proxy through the wrapper modules next to
# this script (no third-party code lives in this repository and nothing comes from a release
# site).
#
# The binaries go to ${FLEETGRAPH_K8S_CACHE:-$HOME/.cache/fleetgraph/k8s}/<key>/bin, where <key>
# names the versions in versions.env; a finished folder carries a .complete stamp (the
# versions, the Go version, and the checksums of this script and of the wrapper go.mod/go.sum
# files) and is reused as it is while the stamp still matches. The Go build cache lives beside
# it (<cache>/go-build) so a cold build really is cold and `rm -rf` of the cache folder undoes
# everything.
#
# Usage: build.sh            build, or reuse the cached binaries
#        build.sh --bin-dir  print the folder the binaries are (or would be) in, build nothing
set -euo pipefail

HERE=$(cd "$(dirname "$0")" && pwd)
# shellcheck source=versions.env
source "$HERE/versions.env"

CACHE=${FLEETGRAPH_K8S_CACHE:-$HOME/.cache/fleetgraph/k8s}
KEY="$K8S_VERSION-etcd-$ETCD_VERSION-kwok-$KWOK_VERSION-metrics-server-$METRICS_SERVER_VERSION"
BIN="$CACHE/$KEY/bin"

if [ "${1:-}" = "--bin-dir" ]; then
    echo "$BIN"
    exit 0
fi

if ! command -v go >/dev/null 2>&1; then
    echo "k8s-tier: go not found; the real control-plane tier (tests/realk8s) needs Go to build" >&2
    exit 1
fi

# What the stamp records: a change to any of these (this script included) rebuilds.
stamp_text() {
    echo "k8s $K8S_VERSION etcd $ETCD_VERSION kwok $KWOK_VERSION" \
        "metrics-server $METRICS_SERVER_VERSION $(go env GOVERSION)"
    (cd "$HERE" && sha256sum build.sh versions.env kubernetes/go.mod kubernetes/go.sum \
        etcd/go.mod etcd/go.sum kwok/go.mod kwok/go.sum metrics-server/go.mod \
        metrics-server/go.sum)
}

BINARIES=(kube-apiserver kube-controller-manager kube-scheduler kubectl etcd etcdctl kwok
    metrics-server)
# The kwok binary runs only the stages its config gives it; kwokctl's defaults (node
# initialise, heartbeat with lease, pod ready/complete/delete) are copied beside it from the
# same module, so they always match the binary.
KWOK_STAGES=(node/fast/node-initialize.yaml node/heartbeat-with-lease/node-heartbeat-with-lease.yaml
    pod/fast/pod-ready.yaml pod/fast/pod-complete.yaml pod/fast/pod-delete.yaml)
# For the control plane that runs metrics-server: KWOK's simulated kubelet /metrics/resource
# (a Metric) and pod usage taken from the kwok.x-k8s.io/usage-cpu|memory annotations (a
# ClusterResourceUsage), both as KWOK ships them.
KWOK_METRICS=(metrics/resource/metrics-resource.yaml metrics/usage/usage-from-annotation.yaml)
# metrics-server's own RBAC (its ServiceAccount, the auth-delegator and auth-reader bindings,
# node and pod reads), Service and APIService, from its module; the tier points the Service
# and the APIService at the local process.
METRICS_SERVER_MANIFESTS=(rbac.yaml service.yaml apiservice.yaml)
EXTRAS=(kwok-stages.yaml kwok-metrics.yaml metrics-server-manifests.yaml)

if [ -f "$BIN/.complete" ] && [ "$(cat "$BIN/.complete")" = "$(stamp_text)" ]; then
    missing=0
    for b in "${BINARIES[@]}"; do [ -x "$BIN/$b" ] || missing=1; done
    for f in "${EXTRAS[@]}"; do [ -s "$BIN/$f" ] || missing=1; done
    if [ "$missing" -eq 0 ]; then
        echo "k8s-tier: reusing $BIN"
        exit 0
    fi
fi

export CGO_ENABLED=0 GOTOOLCHAIN=local GOFLAGS="-mod=readonly -trimpath"
export GOCACHE="$CACHE/go-build"
# 2 cores shared with other people's tests: stay in the background of the scheduler.
NICE=(nice -n 15)

# Each wrapper must require the version versions.env names, or the key would lie.
check_version() { # dir module want
    local got
    got=$(cd "$HERE/$1" && go list -m -f '{{.Version}}' "$2")
    if [ "$got" != "$3" ]; then
        echo "k8s-tier: $1/go.mod requires $2 $got but versions.env says $3" >&2
        exit 1
    fi
}
check_version kubernetes k8s.io/kubernetes "$K8S_VERSION"
check_version etcd go.etcd.io/etcd/server/v3 "$ETCD_VERSION"
check_version kwok sigs.k8s.io/kwok "$KWOK_VERSION"
check_version metrics-server sigs.k8s.io/metrics-server "$METRICS_SERVER_VERSION"

WORK="$CACHE/$KEY/bin.partial"
rm -rf "$WORK"
mkdir -p "$WORK"

build() { # wrapper-dir output ldflags package...
    local dir=$1 out=$2 ldflags=$3 start
    shift 3
    start=$(date +%s)
    (cd "$HERE/$dir" && "${NICE[@]}" go build -pgo=off -ldflags "$ldflags" -o "$out" "$@")
    echo "k8s-tier: built $* in $(($(date +%s) - start)) s"
}

total_start=$(date +%s)
BUILD_DATE=$(date -u +%Y-%m-%dT%H:%M:%SZ)
K8S_MAJOR=${K8S_VERSION#v}
K8S_MAJOR=${K8S_MAJOR%%.*}
K8S_MINOR=${K8S_VERSION#v*.}
K8S_MINOR=${K8S_MINOR%%.*}
# The same variables Kubernetes' hack/lib/version.sh sets, so /version and --version tell the
# truth (the module proxy carries no commit, so gitCommit stays unset).
K8S_LDFLAGS="-s -w"
for pkg in k8s.io/component-base/version k8s.io/client-go/pkg/version; do
    K8S_LDFLAGS+=" -X $pkg.gitVersion=$K8S_VERSION -X $pkg.gitMajor=$K8S_MAJOR"
    K8S_LDFLAGS+=" -X $pkg.gitMinor=$K8S_MINOR -X $pkg.buildDate=$BUILD_DATE"
done
build kubernetes "$WORK/" "$K8S_LDFLAGS" \
    k8s.io/kubernetes/cmd/kube-apiserver \
    k8s.io/kubernetes/cmd/kube-controller-manager \
    k8s.io/kubernetes/cmd/kube-scheduler \
    k8s.io/kubernetes/cmd/kubectl
ETCD_LDFLAGS="-s -w -X go.etcd.io/etcd/api/v3/version.Version=${ETCD_VERSION#v}"
# The etcd server's main package is its module's root (go.etcd.io/etcd/server/v3).
build etcd "$WORK/etcd" "$ETCD_LDFLAGS" go.etcd.io/etcd/server/v3
build etcd "$WORK/etcdctl" "$ETCD_LDFLAGS" go.etcd.io/etcd/etcdctl/v3
build kwok "$WORK/kwok" "-s -w -X sigs.k8s.io/kwok/pkg/consts.Version=${KWOK_VERSION#v} \
-X sigs.k8s.io/kwok/pkg/consts.PreRelease=GA" sigs.k8s.io/kwok/cmd/kwok
# metrics-server reports its version through client-go's version package (its Makefile's
# VERSION_LDFLAGS); its own go.mod pins the k8s.io libraries it is tested with (v0.33), so
# its wrapper keeps them rather than the apiserver's. (Raised to v0.35.4 it builds, sharing
# the build cache, but panics at start: "unable to get openapi models: cannot find model
# definition for io.k8s.metrics.pkg.apis.metrics.v1beta1.NodeMetrics", since its generated
# OpenAPI code names the models the way v0.33 does.)
MS_LDFLAGS="-s -w"
for var in "gitVersion=$METRICS_SERVER_VERSION" "buildDate=$BUILD_DATE"; do
    MS_LDFLAGS+=" -X k8s.io/client-go/pkg/version.$var"
done
build metrics-server "$WORK/metrics-server" "$MS_LDFLAGS" \
    sigs.k8s.io/metrics-server/cmd/metrics-server

KWOK_DIR=$(cd "$HERE/kwok" && go list -m -f '{{.Dir}}' sigs.k8s.io/kwok)
for stage in "${KWOK_STAGES[@]}"; do
    echo "# from sigs.k8s.io/kwok@$KWOK_VERSION kustomize/stage/$stage"
    cat "$KWOK_DIR/kustomize/stage/$stage"
    echo "---"
done > "$WORK/kwok-stages.yaml"
for doc in "${KWOK_METRICS[@]}"; do
    echo "# from sigs.k8s.io/kwok@$KWOK_VERSION kustomize/$doc"
    cat "$KWOK_DIR/kustomize/$doc"
    echo "---"
done > "$WORK/kwok-metrics.yaml"
MS_DIR=$(cd "$HERE/metrics-server" && go list -m -f '{{.Dir}}' sigs.k8s.io/metrics-server)
for doc in "${METRICS_SERVER_MANIFESTS[@]}"; do
    echo "# from sigs.k8s.io/metrics-server@$METRICS_SERVER_VERSION manifests/base/$doc"
    cat "$MS_DIR/manifests/base/$doc"
    echo "---"
done > "$WORK/metrics-server-manifests.yaml"

for b in "${BINARIES[@]}"; do
    [ -x "$WORK/$b" ] || { echo "k8s-tier: $b was not built" >&2; exit 1; }
done
for f in "${EXTRAS[@]}"; do
    [ -s "$WORK/$f" ] || { echo "k8s-tier: $f was not written" >&2; exit 1; }
done
stamp_text > "$WORK/.complete"
rm -rf "$BIN"
mv "$WORK" "$BIN"
echo "k8s-tier: built ${BINARIES[*]} into $BIN in $(($(date +%s) - total_start)) s"
du -sh "$BIN"/* | sed 's/^/k8s-tier: /'
