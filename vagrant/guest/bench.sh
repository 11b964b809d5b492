#!/usr/bin/env bash
# Inside host-a or host-b, as root: builds or removes one side of a cross-VM TCP scenario.
#   bench.sh setup SCENARIO PATH   SCENARIO: bridge | vxlan | masq; PATH: kernel | xdpnet
#                                  (bridge and vxlan also xdpnet-tc: the uplink on the tc hook)
#   bench.sh teardown              removes everything setup made (also after a failed setup)
#   bench.sh client DST SECONDS    iperf3 from the container, one stream, prints Gbit/s
# The container is netns xb-ctr (eth0) with its host end xbh; the underlay is eth1
# (192.168.56.11 host-a, .12 host-b). Container addresses: 10.98.0.1 (a) / .2 (b) on the
# bridged or overlay L2; for masq 10.99.0.1 behind host-a's 10.99.0.254, to host-b's .12.
set -euo pipefail
cd "$(dirname "$0")/../.."
NS=xb-ctr UP=eth1
me=$(hostname) ; [ "$me" = host-a ] && { n=1 local=192.168.56.11 remote=192.168.56.12; } || { n=2 local=192.168.56.12 remote=192.168.56.11; }
x() { node dist/src/cli/main.js "$@"; }
in_ctr() { ip netns exec "$NS" "$@"; }

teardown() {
  x detach xbh >/dev/null 2>&1 || true
  x detach "$UP" >/dev/null 2>&1 || true
  x nat masquerade del --src 10.99.0.0/24 --out "$UP" >/dev/null 2>&1 || true
  x vxlan del --vni 1 >/dev/null 2>&1 || true
  x bridge del br0 --force >/dev/null 2>&1 || true
  iptables -t nat -D POSTROUTING -s 10.99.0.0/24 -o "$UP" -j MASQUERADE 2>/dev/null || true
  ip link del br0 2>/dev/null || true
  ip link del vx0 2>/dev/null || true
  ip netns del "$NS" 2>/dev/null || true   # takes eth0 and so xbh with it
  rm -rf "/sys/fs/bpf/xdpnet/ns-$NS" 2>/dev/null || true
  ethtool -K "$UP" tx on >/dev/null 2>&1 || true
  ip link set "$UP" promisc off 2>/dev/null || true
  ip link set "$UP" nomaster 2>/dev/null || true
  pkill -x iperf3 2>/dev/null || true  # the VM runs nothing else called iperf3
}

ctr() { # ctr ADDR/LEN [MTU]
  ip netns add "$NS"
  ip link add xbh type veth peer name eth0 netns "$NS"
  in_ctr ip addr add "$1" dev eth0
  in_ctr ip link set lo up
  in_ctr ip link set eth0 mtu "${2:-1500}" up
  ip link set xbh mtu "${2:-1500}" up
  in_ctr ethtool -K eth0 gro on >/dev/null   # frames XDP redirects into the veth need GRO/NAPI
  in_ctr sysctl -qw net.ipv4.tcp_congestion_control=cubic
}

setup() {
  local scenario=$1 path=$2
  teardown
  case $scenario/$path in
    bridge/kernel)
      ctr "10.98.0.$n/24"
      ip link add br0 type bridge; ip link set br0 up
      ip link set "$UP" master br0; ip link set xbh master br0 ;;
    bridge/xdpnet|bridge/xdpnet-tc)
      ctr "10.98.0.$n/24"
      # eth1 keeps TSO and checksum offload, as in the kernel rows: the host's tap segments and
      # checksums for a receiver whose XDP turned its guest offloads off. (With tx off the sending
      # guest did both in emulated code: 0.215 Gbit/s against 0.310 with tx on, same VMs, 2026-12-05.)
      # A NIC bridged to containers must accept their MACs: qemu's virtio-net filters unicast by
      # MAC like real hardware, and xdpnet does not (yet) set promiscuous mode on bridge ports.
      ip link set "$UP" promisc on
      x bridge add br0
      # xdpnet-tc: virtio-net keeps its receive offloads (native XDP turns them off), so the
      # host's tap hands over 64 KB TCP segments, as to the Linux bridge
      if [ "$path" = xdpnet ]; then x attach "$UP" --bridge br0 --hook xdp --mode native; else x attach "$UP" --bridge br0 --hook tc; fi
      x attach xbh --bridge br0 --hook tc ;;
    vxlan/kernel)
      ctr "10.98.0.$n/24" 1450
      ip link add vx0 type vxlan id 1 local "$local" remote "$remote" dstport 4789 dev "$UP" nolearning
      ip link add br0 type bridge; ip link set br0 up; ip link set vx0 up
      ip link set vx0 master br0; ip link set xbh master br0 ;;
    vxlan/xdpnet|vxlan/xdpnet-tc)
      # decap in XDP or at eth1's tc ingress (docs/vagrant.md, "The seventh run": only XDP's
      # redirect into the veth gives the container GRO)
      ctr "10.98.0.$n/24" 1450
      x bridge add br0
      x attach xbh --bridge br0 --hook tc
      x vxlan add --bridge br0 --vni 1 --local "$local" --dev "$UP" --hook "$([ "$path" = xdpnet ] && echo xdp || echo tc)"
      x vxlan remote add --vni 1 "$remote" ;;
    masq/kernel|masq/xdpnet)
      [ "$me" = host-b ] && return 0   # host-b only answers on its underlay address
      ctr 10.99.0.1/24
      ip addr add 10.99.0.254/24 dev xbh
      in_ctr ip route add default via 10.99.0.254
      sysctl -qw net.ipv4.ip_forward=1
      if [ "$path" = kernel ]; then iptables -t nat -A POSTROUTING -s 10.99.0.0/24 -o "$UP" -j MASQUERADE
      else x nat masquerade add --src 10.99.0.0/24 --out "$UP"; fi ;;
    *) echo "bench.sh: no scenario $scenario/$path" >&2; exit 2 ;;
  esac
}

case ${1:-} in
  setup) setup "$2" "$3" ;;
  teardown) teardown ;;
  mac) in_ctr cat /sys/class/net/eth0/address ;;
  fdb) x fdb add "$2" --bridge br0 --remote "$remote" ;;   # vxlan/xdpnet*: the far container
  server) # server BIND: one iperf3 run, in the container unless BIND is the underlay address
    if [ "$2" = "$local" ]; then iperf3 -s -1 -D -B "$2"; else in_ctr iperf3 -s -1 -D -B "$2"; fi ;;
  client)
    in_ctr iperf3 -c "$2" -t "$3" -J | node -e 'let s="";process.stdin.on("data",(d)=>s+=d).on("end",()=>{const j=JSON.parse(s);if(j.error){console.error(j.error);process.exit(1)}console.log((j.end.sum_received.bits_per_second/1e9).toFixed(3))})' ;;
  *) echo "usage: bench.sh setup SCENARIO kernel|xdpnet|xdpnet-tc | teardown | mac | fdb MAC | server BIND | client DST SECONDS" >&2; exit 2 ;;
esac
