#!/usr/bin/env bash
# make vagrant-up: host-a and host-b booted and provisioned (Node 20, make setup).
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
. "$here/libvirt.sh"
vagrant_prepare
cd "$here"
echo "virtualisation: $(virt_kind)"
# one at a time: under emulation two boots only share the CPU, and host-a is ready sooner
vagrant up --no-parallel --provision "$@"
for vm in host-a host-b; do
  vagrant ssh "$vm" -c 'echo "$(hostname): kernel $(uname -r), $(systemd-detect-virt), $(nproc) vCPUs, eth1 $(ip -br -4 addr show eth1 | awk "{print \$3}") driver $(sudo ethtool -i eth1 | awk "/^driver/{print \$2}"), queues $(sudo ethtool -l eth1 | awk "/Combined/{print \$2}" | paste -sd/) (max/current)"'
done
