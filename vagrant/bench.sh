#!/usr/bin/env bash
# make vagrant-bench: TCP (iperf3, one stream, cubic) from a container on host-a to one on
# host-b across the VMs' virtio-net underlay, the kernel path and xdpnet in the same run:
#   bridge  underlay NIC and container port in one L2 bridge (Linux bridge / xdpnet bridge)
#   vxlan   VNI 1 overlay (kernel vxlan + Linux bridge / xdpnet VTEP, tc encap, decap in XDP or tc)
#   masq    host-a masquerades its container out of the underlay (iptables / xdpnet nat)
# Then the namespace bench (bench/main.ts) inside host-a, where Debian's stock kernel has Open
# vSwitch and nftables flowtables: xdpnet's rows beside the kernel's, OVS's and the flowtable's
# (PEER_ROWS, PEER_REPS runs of PEER_SECS each; PEER_ROWS=none skips it); tc-redirect-ceiling is the
# masquerade rows' own ceiling on the tc hook (clsact there: 6.1 has no tcx).
# Writes bench/results/vagrant.md. RUNS (default 3) alternating runs per row, SECONDS each.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
RUNS=${RUNS:-3} SECS=${SECONDS_PER_RUN:-10} PEER_REPS=${PEER_REPS:-3} PEER_SECS=${PEER_SECS:-3}
PEER_ROWS=${PEER_ROWS:-redirect-ceiling,linux-bridge,xdpnet-bridge,ovs-bridge,xdpnet-bridge-macs,ovs-bridge-macs,kernel-vxlan-encap,xdpnet-vxlan-encap,ovs-vxlan-encap,kernel-vxlan-decap,xdpnet-vxlan-decap,ovs-vxlan-decap,tc-redirect-ceiling,iptables-masq,xdpnet-masq,ovs-masq,nft-flowtable-masq,iptables-masq-10k,xdpnet-masq-10k,xdpnet-masq-xdp,xdpnet-masq-xdp-10k,ovs-masq-10k,nft-flowtable-masq-10k,tcp-linux-bridge,tcp-xdpnet-bridge,tcp-ovs-bridge}
. "$here/libvirt.sh"
vagrant_deps
libvirt_start
cd "$here"
virt=$(virt_kind)
echo "virtualisation: $virt"
vagrant_ensure_box
vagrant up --no-parallel # a new VM is provisioned; a running one keeps its set-up (make all below rebuilds the tree)
vagrant_rsync host-a host-b
# the tree the guests run: the host's checkout as rsynced now (it may move on during the run)
tree="$(git -C "$here/.." rev-parse --short HEAD)$(git -C "$here/.." diff --quiet || echo +dirty)"
cfg=$here/../build/vagrant-ssh.cfg; mkdir -p "$(dirname "$cfg")"
vagrant ssh-config host-a host-b > "$cfg"
on() { local vm=$1; shift; ssh -F "$cfg" -o LogLevel=ERROR "$vm" sudo /xdpnet/vagrant/guest/bench.sh "$@"; }
cleanup() { on host-a teardown || true; on host-b teardown || true; libvirt_stop; }
trap cleanup EXIT

# OVS and nftables (bench-deps) only where the namespace bench runs: minutes of installing under emulation
deps=; [ "$PEER_ROWS" = none ] || deps=bench-deps
ssh -F "$cfg" host-a "sudo make -s -C /xdpnet $deps all" & a=$!
ssh -F "$cfg" host-b 'sudo make -s -C /xdpnet all' & b=$!
wait "$a"; wait "$b" # a build that failed stops the bench here, not as a row of failed runs

row() { # row SCENARIO PATH: one iperf3 run, prints Gbit/s
  local s=$1 p=$2 dst=10.98.0.2
  on host-a setup "$s" "$p" >&2; on host-b setup "$s" "$p" >&2
  case $s/$p in vxlan/xdpnet*)   # static FDB: xdpnet VTEPs do not learn by default
    on host-a fdb "$(on host-b mac)" >&2; on host-b fdb "$(on host-a mac)" >&2
  esac
  [ "$s" = masq ] && dst=192.168.56.12
  on host-b server "$dst"
  sleep 1
  on host-a client "$dst" "$SECS"
  on host-a teardown >&2; on host-b teardown >&2
}

# bridge and vxlan have a second xdpnet path, the uplink on tc instead of XDP (docs/vagrant.md:
# native XDP turns virtio-net's receive offloads off; for VXLAN, "The seventh run")
paths_of() { if [ "$1" = masq ]; then echo kernel xdpnet; else echo kernel xdpnet xdpnet-tc; fi; }
declare -A res
for s in bridge vxlan masq; do
  for r in $(seq "$RUNS"); do
    # alternate the order of the paths, so slow drift in a shared host's CPU hits all alike
    paths=$(paths_of "$s"); [ $((r % 2)) = 0 ] && paths=$(echo "$paths" | tr ' ' '\n' | tac | paste -sd' ')
    for p in $paths; do
      g=$(row "$s" "$p") || g=fail
      echo "$s/$p run $r: $g Gbit/s"
      res[$s/$p]="${res[$s/$p]:-} $g"
    done
  done
done

peers= why=
if [ "$PEER_ROWS" != none ]; then
  echo "namespace bench inside host-a: $PEER_ROWS"
  ssh -F "$cfg" host-a "cd /xdpnet && sudo node dist/bench/main.js --only $PEER_ROWS --reps $PEER_REPS --duration $PEER_SECS --md /tmp/xnb-peers.md" >&2 \
    && peers=$(ssh -F "$cfg" host-a cat /tmp/xnb-peers.md) || { peers=; why="this run's namespace bench failed (see its output)"; }
fi

median() { tr ' ' '\n' | grep -E '^[0-9.]+$' | sort -g | awk '{a[NR]=$1} END {if (NR) print a[int((NR+1)/2)]; else print "fail"}'; }
out=$here/../bench/results/vagrant.md
# PEER_ROWS=none reruns the cross-VM rows only; then, or if the namespace bench failed, the last
# run's section of it stays (marked as such).
kept=; [ -z "$peers" ] && [ -f "$out" ] && kept=$(sed -n '/^## Inside host-a/,$p' "$out")
cpu=$(ssh -F "$cfg" host-a "grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //'")
kern=$(ssh -F "$cfg" host-a uname -r)
{
  echo "# Cross-VM TCP: xdpnet against the kernel path (make vagrant-bench)"
  echo
  echo "$(date -u +%Y-%m-%d), tree $tree. Two Debian 12 VMs (kernel $kern, 2 vCPUs,"
  echo "virtio-net underlay on an isolated libvirt network), **$virt**, guest CPU \"$cpu\"."
  echo "iperf3, one TCP stream (cubic) container → container, $SECS s per run, median of $RUNS runs per row,"
  echo "kernel and xdpnet runs alternating. Under emulation every figure is set by qemu's TCG"
  echo "translation on a shared host CPU: only the ratio within this run means anything."
  echo
  echo "| scenario | kernel path | Gbit/s | xdpnet | Gbit/s | xdpnet / kernel | runs (kernel; xdpnet) |"
  echo "|---|---|---:|---|---:|---:|---|"
  for sp in bridge/xdpnet bridge/xdpnet-tc vxlan/xdpnet vxlan/xdpnet-tc masq/xdpnet; do
    s=${sp%/*} p=${sp#*/}
    k=$(echo ${res[$s/kernel]} | median) x=$(echo ${res[$sp]} | median)
    ratio=$(awk -v k="$k" -v x="$x" 'BEGIN { if (k + 0 > 0 && x + 0 > 0) printf "%.2f", x / k; else print "-" }')
    case $s in bridge) kd="Linux bridge (eth1 + port)" ;; vxlan) kd="vxlan dev + Linux bridge" ;; masq) kd="iptables MASQUERADE" ;; esac
    case $sp in
      bridge/xdpnet) xd="bridge: XDP native on eth1, tc on port" ;;
      bridge/xdpnet-tc) xd="bridge: tc on eth1 and port" ;;
      vxlan/xdpnet) xd="VTEP: XDP decap on eth1, tc encap" ;;
      vxlan/xdpnet-tc) xd="VTEP: tc decap on eth1, tc encap" ;;
      masq/*) xd="nat masquerade" ;;
    esac
    echo "| $s | $kd | $k | $xd | $x | $ratio | ${res[$s/kernel]# }; ${res[$sp]# } |"
  done
  if [ -n "$peers" ]; then
    echo
    echo "## Inside host-a: the namespace bench with Open vSwitch and nftables flowtables"
    echo
    echo "\`node dist/bench/main.js --only … --reps $PEER_REPS --duration $PEER_SECS\` in host-a (docs/performance.md: the same"
    echo "topologies as \`make bench\`, veth pairs between namespaces, one generator core), $virt."
    echo "Debian's stock kernel has CONFIG_OPENVSWITCH and CONFIG_NF_FLOW_TABLE, which the development"
    echo "kernel lacks. Only the ratios within this run mean anything."
    echo
    echo "$peers"
  elif [ -n "$kept" ]; then
    echo
    echo "(This section is from an earlier run: ${why:-this one ran with PEER_ROWS=none}.)"
    echo
    echo "$kept" | grep -v '^(This section is from an earlier run'
  fi
} > "$out.tmp" && mv "$out.tmp" "$out"
cat "$out"
