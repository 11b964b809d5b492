#!/usr/bin/env bash
# Inside host-a, as root (make vagrant-test): every test tier on the VM's stock kernel, then
# native XDP on the virtio-net underlay NIC. Exit status: non-zero if anything failed.
set -uo pipefail
cd "$(dirname "$0")/../.."
echo "== $(hostname): Linux $(uname -r), $(systemd-detect-virt), $(nproc) vCPUs, node $(node --version)"
echo "== tcx in this kernel: $(grep -qw tcx_prog_attach /proc/kallsyms && echo yes || echo 'no (tc hooks go through clsact)')"
rc=0
echo "== make test (unit, bpf, e2e tiers)"
make test 2>&1 | tee /tmp/xdpnet-make-test.log | grep -E '^(FAILED|no vitest|[0-9]+ passed, [0-9]+ failed)|✗|×|Error' || true
grep -qE '^[0-9]+ passed, 0 failed$' /tmp/xdpnet-make-test.log || rc=1
echo "== native XDP on the virtio-net NIC"
vagrant/guest/native-xdp.sh "${XDP_IFACE:-eth1}" "${XDP_PEER:-192.168.56.12}" || rc=1
exit $rc
