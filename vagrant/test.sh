#!/usr/bin/env bash
# make vagrant-test: the test tiers inside host-a (Debian 12's stock 6.1 kernel, so the classic
# tc path where tcx is missing) and native XDP on its virtio-net NIC, pinging the libvirt
# host's end of the isolated underlay (192.168.56.1): one VM is enough, which matters under emulation.
# The summary goes to bench/results/vagrant-test.txt as evidence (vagrant-test-TIER.txt for a run
# of one tier or of files of one tier, XDPNET_TEST_DIRS=test/TIER..., so it does not overwrite the other's); full log in build/.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
. "$here/libvirt.sh"
vagrant_prepare
cd "$here"
virt=$(virt_kind)
echo "virtualisation: $virt"
vagrant up --provision host-a
vagrant_rsync host-a
# the tree the guest tests: the host's checkout as rsynced now (it may move on during the run)
tree="$(git -C "$here/.." rev-parse --short HEAD)$(git -C "$here/.." diff --quiet || echo +dirty)"
name=vagrant-test
# one tier, or files of one tier: named by it
tiers=$(for d in ${XDPNET_TEST_DIRS:-}; do [[ $d =~ ^test/([a-z0-9]+)(/|$) ]] && echo "${BASH_REMATCH[1]}" || echo other; done | sort -u)
[[ -n $tiers && $tiers != *$'\n'* && $tiers != other ]] && name=vagrant-test-$tiers
log=$here/../build/$name.log out=$here/../bench/results/$name.txt
mkdir -p "$(dirname "$log")"
rc=interrupted
summarize() { # also on an interrupted run: whatever tiers finished are evidence too
  {
    echo "# make vagrant-test, $(date -u +%Y-%m-%dT%H:%MZ), tree $tree"
    echo "# host: $(uname -r), VMs under $virt"
    grep -E '^(==|FILE|FAILED|PASS|FAIL|[0-9]+ passed, [0-9]+ failed)|^ *(Test Files|Tests|Duration) ' "$log" | tr -d '\r'
    echo "# exit status $rc"
  } > "$out"
  cat "$out"
}
trap 'summarize; libvirt_stop' EXIT
set +e
vagrant ssh host-a -c "sudo XDPNET_TEST_DIRS='${XDPNET_TEST_DIRS:-}' XDPNET_BPF_COMPAT='${XDPNET_BPF_COMPAT:-}' /xdpnet/vagrant/guest/test.sh" 2>&1 | tee "$log"
rc=${PIPESTATUS[0]}
set -e
exit "$rc"
