# xdpnet — `make demo` and `make test` do all set-up on a fresh Debian 12 (root).
SHELL := /bin/bash
CLANG ?= clang
BPF_CFLAGS := -target bpf -O2 -g -mcpu=v3 -Wall -Werror \
	-I/usr/include/x86_64-linux-gnu -Ibpf
BPF_SRC := $(wildcard bpf/*.bpf.c)
BPF_OBJ := $(patsubst bpf/%.bpf.c,build/bpf/%.bpf.o,$(BPF_SRC))
BPF_COMPAT_OBJ := $(patsubst build/bpf/%,build/bpf-compat/%,$(BPF_OBJ))
BPF_HDR := $(wildcard bpf/lib/*.h bpf/include/*.h)
# Objects only tests load (e.g. one the verifier must reject).
FIXTURE_OBJ := $(patsubst test/fixtures/%.bpf.c,build/fixtures/%.bpf.o,$(wildcard test/fixtures/*.bpf.c))

APT_PKGS := clang llvm libbpf-dev linux-libc-dev iproute2 iputils-ping iputils-arping iperf3 ethtool \
	tcpdump tshark iptables conntrack util-linux kmod bpftool prometheus \
	podman runc containernetworking-plugins busybox-static etcd-server

.PHONY: all setup deps bench-deps bench-objects bpffs bpf ts demo test crash fuzz bench bench-agent install-cni \
	vagrant-box vagrant-up vagrant-test vagrant-bench vagrant-down clean

all: bpf ts

setup: deps node_modules/.installed bpffs

# Install only what is missing, so a prepared machine pays nothing.
deps:
	@command -v node >/dev/null && node -e 'process.exit(+(+process.versions.node.split(".")[0] < 20))' \
		|| { echo "xdpnet needs Node.js >= 20 on PATH" >&2; exit 1; }
	@missing=$$(for p in $(APT_PKGS); do dpkg-query -W -f='$${Status}' $$p 2>/dev/null | grep -q 'ok installed' || echo $$p; done); \
	if [ -n "$$missing" ]; then \
		echo "installing:" $$missing; \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing >/dev/null; \
	fi

node_modules/.installed: package.json package-lock.json
	npm ci --no-audit --no-fund --loglevel=error
	@touch $@

bpffs:
	@mountpoint -q /sys/fs/bpf || mount -t bpf bpf /sys/fs/bpf

bpf: $(BPF_OBJ) $(BPF_COMPAT_OBJ) $(FIXTURE_OBJ)

build/bpf/%.bpf.o: bpf/%.bpf.c $(BPF_HDR)
	@mkdir -p $(@D)
	$(CLANG) $(BPF_CFLAGS) -c $< -o $@

# The same sources without bpf_loop and the 5.18 XDP helpers, for kernels
# 5.12-5.16 (Ubuntu 22.04's 5.15); the loader picks the set (docs/kernels.md).
build/bpf-compat/%.bpf.o: bpf/%.bpf.c $(BPF_HDR)
	@mkdir -p $(@D)
	$(CLANG) $(BPF_CFLAGS) -DXN_COMPAT -c $< -o $@

# Objects with counting compiled out: bench/moncost.ts's baselines (never loaded otherwise).
bench-objects: $(patsubst build/bpf/%,build/bpf-nomon/%,$(BPF_OBJ)) $(patsubst build/bpf/%,build/bpf-nocache/%,$(BPF_OBJ))

build/bpf-nomon/%.bpf.o: bpf/%.bpf.c $(BPF_HDR)
	@mkdir -p $(@D)
	$(CLANG) $(BPF_CFLAGS) -DXN_MON_OFF -c $< -o $@

build/bpf-nocache/%.bpf.o: bpf/%.bpf.c $(BPF_HDR)
	@mkdir -p $(@D)
	$(CLANG) $(BPF_CFLAGS) -DXN_CACHE_STATS_OFF -c $< -o $@

build/fixtures/%.bpf.o: test/fixtures/%.bpf.c $(BPF_HDR)
	@mkdir -p $(@D)
	$(CLANG) $(BPF_CFLAGS) -c $< -o $@

# The two executables (package.json "bin") are run directly: by a shell, by a CNI runtime.
# The CNI plugin runs once per container operation, so it ships as one bundled file:
# node loads one module instead of ~35 (half of its start-up time; docs/cni.md "Speed").
ts: node_modules/.installed
	npx tsc -p tsconfig.json
	npx esbuild dist/src/cni/main.js --bundle --platform=node --format=esm --target=node20 \
		--external:koffi --log-level=warning --outfile=dist/xdpnet-cni.js
	chmod +x dist/src/cli/main.js dist/xdpnet-cni.js

demo: setup all
	node dist/src/demo/main.js

test: setup all
	npx tsc -p test/tsconfig.json
	node test/run.mjs

# The CNI plugin, where runtimes look for it (CNI_PATH); a link, so a rebuild updates it. Writes nothing else.
install-cni: ts
	install -d /opt/cni/bin
	ln -sfn $(CURDIR)/dist/xdpnet-cni.js /opt/cni/bin/xdpnet

# kill -9 at random points of state-changing commands under traffic; `make test` runs 10 trials.
CRASH_TRIALS ?= 100
crash: setup all
	npx tsc -p test/tsconfig.json
	XDPNET_CRASH_TRIALS=$(CRASH_TRIALS) npx vitest run --config test/vitest.config.ts test/e2e/crash.test.ts

# Every entry program fed mutated frames and checked against test/fuzz's reference
# (docs/reliability.md); `make test` runs 1e5 frames a program. `make fuzz` runs the
# six programs in parallel processes, FUZZ_FRAMES each, and writes the figures to
# bench/results/fuzz.md; XDPNET_FUZZ_SEED=N repeats a run.
FUZZ_FRAMES ?= 10000000
fuzz: setup all
	npx tsc -p test/tsconfig.json
	node test/fuzz/parallel.mjs $(FUZZ_FRAMES) $(CURDIR)/bench/results/fuzz.md


# The bench's peers (bench/peers.ts): nftables, and Open vSwitch where the
# kernel has its module (the rows are skipped elsewhere). Installing must not
# start OVS's service: the bench starts and stops its own in a namespace.
bench-deps:
	@pkgs=nftables; \
	if modprobe -nq openvswitch 2>/dev/null || [ -d /sys/module/openvswitch ]; then pkgs="$$pkgs openvswitch-switch"; fi; \
	missing=$$(for p in $$pkgs; do dpkg-query -W -f='$${Status}' $$p 2>/dev/null | grep -q 'ok installed' || echo $$p; done); \
	if [ -n "$$missing" ]; then \
		echo "installing:" $$missing; \
		own=; [ -e /usr/sbin/policy-rc.d ] || { printf '#!/bin/sh\nexit 101\n' > /usr/sbin/policy-rc.d; chmod +x /usr/sbin/policy-rc.d; own=1; }; \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing >/dev/null; rc=$$?; \
		[ -z "$$own" ] || rm -f /usr/sbin/policy-rc.d; exit $$rc; \
	fi

# ARGS: e.g. ARGS="--only xdpnet-bridge,linux-bridge --reps 3" (docs/performance.md)
bench: setup bench-deps all
	node dist/bench/main.js $(ARGS)

# The cluster agent against an etcd holding 1000 hosts x 50 endpoints (bench/results/agent.md).
bench-agent: setup all
	node dist/bench/agent.js

# Two Debian 12 VMs (vagrant-libvirt; KVM, or qemu's emulation without /dev/kvm): see docs/vagrant.md.
# Not part of `make test`: each installs what it needs and starts libvirt's daemons if none run.
vagrant-box:
	XDPNET_APT_PKGS="$(APT_PKGS)" vagrant/box/build.sh $(if $(FORCE),--force)

vagrant-up:
	XDPNET_APT_PKGS="$(APT_PKGS)" vagrant/up.sh

vagrant-test:
	XDPNET_APT_PKGS="$(APT_PKGS)" vagrant/test.sh

vagrant-bench:
	XDPNET_APT_PKGS="$(APT_PKGS)" vagrant/bench.sh

vagrant-down:
	vagrant/down.sh

clean:
	rm -rf build dist
