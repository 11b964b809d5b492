#!/usr/bin/env bash
# Inside a VM, as root: xdpnet attaches XDP in native (driver) mode to the virtio-net NIC and
# counts real traffic from the peer VM. Usage: native-xdp.sh IFACE PEER_IP
# virtio-net accepts native XDP when its guest offloads (LRO: guest_tso4/6, guest_ecn,
# guest_ufo, guest_csum) can be turned off: qemu offers VIRTIO_NET_F_CTRL_GUEST_OFFLOADS by
# default and the driver clears them itself at attach. XDP_TX/REDIRECT get their own TX queues
# when the NIC has >= 2 x vCPUs queue pairs (the Vagrantfile asks for that).
set -euo pipefail
iface=$1 peer=$2
cd "$(dirname "$0")/../.."
x() { node dist/src/cli/main.js "$@"; }
fail() { echo "FAIL native XDP on $iface: $*"; x detach "$iface" >/dev/null 2>&1 || true; exit 1; }
rx() { x stats --json | node -e 'let s="";process.stdin.on("data",(d)=>s+=d).on("end",()=>console.log(JSON.parse(s).interfaces.find((i)=>i.iface===process.argv[1])?.rxPackets ?? 0))' "$iface"; }

ethtool -l "$iface" | awk '/Combined/{print}' | paste -sd' ' | sed "s/^/$iface queues (max, current): /"
ethtool -k "$iface" | grep -E '^(rx-gro-hw|large-receive-offload|rx-checksumming):' | paste -sd' '
x attach "$iface" --mode native || fail "attach refused"
ip -d link show "$iface" | grep -q ' xdp ' || fail "ip link does not show a driver-mode (xdp) program"
x status --json | grep -q '"mode": *"native"' || fail "status does not say native"
before=$(rx)
ping -c 20 -i 0.2 -q "$peer" >/dev/null || fail "no ping replies from $peer with XDP attached"
after=$(rx)
[ "$((after - before))" -ge 20 ] || fail "XDP counted $((after - before)) frames for 20 ping replies"
x detach "$iface"
ip -d link show "$iface" | grep -q ' xdp' && fail "program still attached after detach"
echo "PASS native XDP on $iface (virtio-net): attached in driver mode, counted $((after - before)) frames for 20 ping replies, detached"
