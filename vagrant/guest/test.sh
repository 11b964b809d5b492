#!/usr/bin/env bash
# Inside host-a, as root (make vagrant-test): native XDP on the virtio-net underlay NIC, then the
# kernel-facing test tiers (bpf, e2e; the unit tier does not touch the kernel) on the VM's stock
# kernel. XDPNET_TEST_DIRS overrides the tiers or names single files. Non-zero exit if anything failed.
set -uo pipefail
cd "$(dirname "$0")/../.."
dirs=${XDPNET_TEST_DIRS:-}; dirs=${dirs:-test/bpf test/e2e}
echo "== $(hostname): Linux $(uname -r), $(systemd-detect-virt), $(nproc) vCPUs, node $(node --version)"
echo "== tcx in this kernel: $(grep -qw tcx_prog_attach /proc/kallsyms && echo yes || echo 'no (tc hooks go through clsact)')"
make -s setup all >/dev/null && npx tsc -p test/tsconfig.json || { echo "FAIL build"; exit 1; }
# Under qemu's emulation (TCG) everything runs 10-30x slower: vitest's per-test and hook
# timeouts get room, and the upgrade loop runs shorter (its rounds make a figure, not
# a different check). Under KVM the tests run as on a host.
timeouts=()
if [ "$(systemd-detect-virt)" = qemu ]; then
  timeouts=(--testTimeout=1800000 --hookTimeout=1800000)
  export XDPNET_UPGRADE_ROUNDS=${XDPNET_UPGRADE_ROUNDS:-5}
  export XDPNET_TIMEOUT_SCALE=${XDPNET_TIMEOUT_SCALE:-10}   # limits tests set themselves (test/helpers/sys.ts slow())
  echo "== emulated: timeouts 30 min, the tests' own limits x$XDPNET_TIMEOUT_SCALE, upgrade rounds $XDPNET_UPGRADE_ROUNDS (100 on a host)"
fi
[ -n "${XDPNET_BPF_COMPAT:-}" ] && echo "== XDPNET_BPF_COMPAT=$XDPNET_BPF_COMPAT (object set forced)"
rc=0
echo "== native XDP on the virtio-net NIC"
vagrant/guest/native-xdp.sh "${XDP_IFACE:-eth1}" "${XDP_PEER:-192.168.56.1}" || rc=1
summary() { # summary REPORT: per-file counts, failures, the tier's total; non-zero if anything failed
  node -e '
    const j = JSON.parse(require("fs").readFileSync(process.argv[1], "utf8"));
    for (const f of j.testResults) {
      const n = (s) => f.assertionResults.filter((a) => a.status === s).length;
      console.log(`FILE ${f.name.replace(process.cwd() + "/", "")}: ${n("passed")} passed, ${n("failed")} failed, ${n("skipped") + n("pending")} skipped`);
      for (const a of f.assertionResults) if (a.status === "failed") console.log(`FAILED ${a.fullName}: ${(a.failureMessages[0] ?? "").split("\n")[0].slice(0, 200)}`);
    }
    const failed = j.numFailedTests + (j.numRuntimeErrorTestSuites ?? 0);
    console.log(`${j.numPassedTests} passed, ${failed} failed`);
    process.exit(failed || !j.numTotalTests ? 1 : 0);
  ' "$1"
}
# One tier at a time, so a slow emulated run shows each tier's result as soon as it has one.
for d in $dirs; do
  echo "== vitest: $d"
  report=$(mktemp)
  npx vitest run --config test/vitest.config.ts "${timeouts[@]}" --reporter=default --reporter=json --outputFile.json="$report" "$d" \
    > "/tmp/xdpnet-vitest-${d//\//-}.log" 2>&1
  sed 's/\x1b\[[0-9;]*m//g' "/tmp/xdpnet-vitest-${d//\//-}.log" | grep -E '^ *(Test Files|Tests|Duration) '
  summary "$report" || rc=1
done
exit $rc
