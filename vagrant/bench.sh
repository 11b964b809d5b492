#!/usr/bin/env bash
# Cross-VM benchmark, run on the machine where vagrant is installed.
# Expects /xdpnet/bench/run (from the synced tree) to take
# `--role sink|gen --iface IF [--peer IP]`, and the sink to exit on its own
# once the generator's run is over.
set -euo pipefail
cd "$(dirname "$0")"

vagrant up --provision

vagrant ssh host-b -c "sudo /xdpnet/bench/run --role sink --iface eth1" &
sink=$!
trap 'kill "$sink" 2>/dev/null || true' EXIT  # don't leave the sink session behind on failure
sleep 2  # let the sink attach before traffic starts
vagrant ssh host-a -c "sudo /xdpnet/bench/run --role gen --iface eth1 --peer 192.168.56.12"
wait "$sink"
