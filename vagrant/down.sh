#!/usr/bin/env bash
# make vagrant-down: destroys host-a and host-b (their disks and the underlay network with them).
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
. "$here/libvirt.sh"
libvirt_start; trap libvirt_stop EXIT
cd "$here"
vagrant destroy -f
virsh -c qemu:///system net-info xdpnet-underlay >/dev/null 2>&1 && \
  { virsh -c qemu:///system net-destroy xdpnet-underlay; virsh -c qemu:///system net-undefine xdpnet-underlay; } || true
