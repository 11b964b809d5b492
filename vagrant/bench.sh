#!/usr/bin/env bash
# make vagrant-bench: TCP (iperf3, one stream, cubic) from a container on host-a to one on
# host-b across the VMs' virtio-net underlay, the kernel path and xdpnet in the same run:
#   bridge  underlay NIC and container port in one L2 bridge (Linux bridge / xdpnet bridge)
#   vxlan   VNI 1 overlay (kernel vxlan + Linux bridge / xdpnet VTEP, XDP decap, tc encap)
#   masq    host-a masquerades its container out of the underlay (iptables / xdpnet nat)
# Writes bench/results/vagrant.md. RUNS (default 3) alternating runs per row, SECONDS each.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
RUNS=${RUNS:-3} SECS=${SECONDS_PER_RUN:-10}
. "$here/libvirt.sh"
vagrant_deps
libvirt_start
cd "$here"
virt=$(virt_kind)
echo "virtualisation: $virt"
vagrant_ensure_box
vagrant up --provision
vagrant rsync
cfg=$here/../build/vagrant-ssh.cfg; mkdir -p "$(dirname "$cfg")"
vagrant ssh-config host-a host-b > "$cfg"
on() { local vm=$1; shift; ssh -F "$cfg" -o LogLevel=ERROR "$vm" sudo /xdpnet/vagrant/guest/bench.sh "$@"; }
cleanup() { on host-a teardown || true; on host-b teardown || true; libvirt_stop; }
trap cleanup EXIT

for vm in host-a host-b; do ssh -F "$cfg" "$vm" 'sudo make -s -C /xdpnet all' & done; wait

row() { # row SCENARIO PATH: one iperf3 run, prints Gbit/s
  local s=$1 p=$2 dst=10.98.0.2
  on host-a setup "$s" "$p" >&2; on host-b setup "$s" "$p" >&2
  if [ "$s/$p" = vxlan/xdpnet ]; then   # static FDB: xdpnet VTEPs do not learn by default
    on host-a fdb "$(on host-b mac)" >&2; on host-b fdb "$(on host-a mac)" >&2
  fi
  [ "$s" = masq ] && dst=192.168.56.12
  on host-b server "$dst"
  sleep 1
  on host-a client "$dst" "$SECS"
  on host-a teardown >&2; on host-b teardown >&2
}

declare -A res
for s in bridge vxlan masq; do
  for r in $(seq "$RUNS"); do
    # alternate which path goes first, so slow drift in a shared host's CPU hits both alike
    paths="kernel xdpnet"; [ $((r % 2)) = 0 ] && paths="xdpnet kernel"
    for p in $paths; do
      g=$(row "$s" "$p") || g=fail
      echo "$s/$p run $r: $g Gbit/s"
      res[$s/$p]="${res[$s/$p]:-} $g"
    done
  done
done

median() { tr ' ' '\n' | grep -E '^[0-9.]+$' | sort -g | awk '{a[NR]=$1} END {if (NR) print a[int((NR+1)/2)]; else print "fail"}'; }
out=$here/../bench/results/vagrant.md
cpu=$(ssh -F "$cfg" host-a "grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //'")
kern=$(ssh -F "$cfg" host-a uname -r)
{
  echo "# Cross-VM TCP: xdpnet against the kernel path (make vagrant-bench)"
  echo
  echo "$(date -u +%Y-%m-%d), tree $(git -C "$here/.." rev-parse --short HEAD). Two Debian 12 VMs (kernel $kern, 2 vCPUs,"
  echo "virtio-net underlay on an isolated libvirt network), **$virt**, guest CPU \"$cpu\"."
  echo "iperf3, one TCP stream (cubic) container → container, $SECS s per run, median of $RUNS runs per row,"
  echo "kernel and xdpnet runs alternating. Under emulation every figure is set by qemu's TCG"
  echo "translation on a shared host CPU: only the ratio within this run means anything."
  echo
  echo "| scenario | kernel path | Gbit/s | xdpnet | Gbit/s | xdpnet / kernel | runs (kernel; xdpnet) |"
  echo "|---|---|---:|---|---:|---:|---|"
  for s in bridge vxlan masq; do
    k=$(echo ${res[$s/kernel]} | median) x=$(echo ${res[$s/xdpnet]} | median)
    ratio=$(awk -v k="$k" -v x="$x" 'BEGIN { if (k + 0 > 0 && x + 0 > 0) printf "%.2f", x / k; else print "-" }')
    case $s in
      bridge) kd="Linux bridge (eth1 + port)" xd="bridge: XDP native on eth1, tc on port" ;;
      vxlan) kd="vxlan dev + Linux bridge" xd="VTEP: XDP decap on eth1, tc encap" ;;
      masq) kd="iptables MASQUERADE" xd="nat masquerade" ;;
    esac
    echo "| $s | $kd | $k | $xd | $x | $ratio | ${res[$s/kernel]# }; ${res[$s/xdpnet]# } |"
  done
} > "$out"
cat "$out"
