#!/usr/bin/env bash
# Runs as root inside each VM on every `vagrant up --provision`.
# `make setup` (apt deps, npm ci, bpffs mount) is idempotent, so re-running is safe.
set -euo pipefail
cd /xdpnet
make setup
