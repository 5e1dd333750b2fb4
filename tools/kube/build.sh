#!/usr/bin/env bash
# Builds the Kubernetes control-plane binaries used by the test harness in
# workers/kubernetes/kubetest: kube-apiserver, kube-controller-manager and etcd.
#
# Output: ${KUBE_TOOLS_DIR:-$HOME/.cache/uptime-coordinator/kube-v1.36.3}/bin
#
# The build is skipped entirely when all binaries exist and the stamp file
# matches the hash of this module's inputs; otherwise each binary is rebuilt
# with `go build`, which reuses Go's build cache (a cold build takes about
# 15-18 minutes on 2 cores, a warm one seconds).
set -euo pipefail

readonly K8S_VERSION=v1.36.3
readonly K8S_MINOR=36
readonly BINARIES=(etcd kube-apiserver kube-controller-manager)

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
tools_dir="${KUBE_TOOLS_DIR:-${HOME}/.cache/uptime-coordinator/kube-${K8S_VERSION}}"
bin_dir="${tools_dir}/bin"
stamp_file="${tools_dir}/build.stamp"

fail() {
	echo "tools/kube/build.sh: FAILED: $*" >&2
	exit 1
}
trap 'fail "command failed at line ${LINENO}"' ERR

command -v go >/dev/null 2>&1 || fail "go is not on PATH"

ldflags_k8s="-s -w"
ldflags_k8s+=" -X k8s.io/component-base/version.gitVersion=${K8S_VERSION}"
ldflags_k8s+=" -X k8s.io/component-base/version.gitMajor=1"
ldflags_k8s+=" -X k8s.io/component-base/version.gitMinor=${K8S_MINOR}"
ldflags_k8s+=" -X k8s.io/component-base/version.gitTreeState=clean"
ldflags_etcd="-s -w"

# The stamp covers everything that determines the binaries' content.
stamp="$(
	cd "${here}"
	{
		go env GOVERSION GOOS GOARCH
		echo "${ldflags_k8s}" "${ldflags_etcd}"
		sha256sum go.mod go.sum cmd/*/main.go
	} | sha256sum | cut -d' ' -f1
)"

up_to_date=true
for b in "${BINARIES[@]}"; do
	[[ -x "${bin_dir}/${b}" ]] || up_to_date=false
done
if [[ "${up_to_date}" == true && -f "${stamp_file}" && "$(cat "${stamp_file}")" == "${stamp}" ]]; then
	echo "kube tools ${K8S_VERSION} up to date in ${bin_dir}"
	exit 0
fi

mkdir -p "${bin_dir}"
rm -f "${stamp_file}"
echo "building kube tools ${K8S_VERSION} into ${bin_dir} ($(go env GOVERSION), GOCACHE=$(go env GOCACHE))"

total_start=${SECONDS}
for b in "${BINARIES[@]}"; do
	start=${SECONDS}
	flags="${ldflags_k8s}"
	[[ "${b}" == etcd ]] && flags="${ldflags_etcd}"
	tmp="${bin_dir}/.${b}.tmp"
	if ! (cd "${here}" && go build -buildvcs=false -trimpath -ldflags "${flags}" -o "${tmp}" "./cmd/${b}"); then
		rm -f "${tmp}"
		fail "go build ./cmd/${b} failed"
	fi
	mv -f "${tmp}" "${bin_dir}/${b}"
	echo "  ${b}: built in $((SECONDS - start))s ($(du -h "${bin_dir}/${b}" | cut -f1))"
done

# Smoke-check that the binaries run and report the expected versions.
"${bin_dir}/kube-apiserver" --version | grep -qx "Kubernetes ${K8S_VERSION}" ||
	fail "kube-apiserver does not report ${K8S_VERSION}"
"${bin_dir}/etcd" --version >/dev/null || fail "etcd --version failed"

echo "${stamp}" >"${stamp_file}"
echo "kube tools ${K8S_VERSION} built in $((SECONDS - total_start))s"
