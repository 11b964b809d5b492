# Sourced by vagrant/*.sh: the host side of the VM targets.
# Installs what is missing, and starts libvirt's daemons where no init system runs them
# (a container or chroot without systemd); they are stopped by PID when the target ends,
# and only if this target started them. Running domains survive libvirtd's exit.
VAGRANT_PKGS="vagrant vagrant-libvirt libvirt-daemon-system qemu-system-x86 qemu-utils
  dnsmasq-base iptables rsync debootstrap grub-pc-bin fdisk e2fsprogs"

vagrant_deps() {
  local missing p
  missing=$(for p in $VAGRANT_PKGS; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'ok installed' || echo "$p"; done)
  if [ -n "$missing" ]; then
    echo "installing:" $missing
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $missing >/dev/null
  fi
}

started_pids=()
libvirt_start() {
  local d
  for d in virtlogd libvirtd; do
    if ! pgrep -x "$d" >/dev/null; then
      "$d" -d
      for _ in $(seq 50); do pgrep -x "$d" >/dev/null && break; sleep 0.1; done
      started_pids+=("$(pgrep -x "$d")")
      echo "started $d (pid ${started_pids[-1]})"
    fi
  done
  for _ in $(seq 50); do virsh -c qemu:///system version >/dev/null 2>&1 && break; sleep 0.2; done
  virsh -c qemu:///system version >/dev/null || { echo "libvirtd does not answer" >&2; return 1; }
}
libvirt_stop() {
  local i
  for ((i = ${#started_pids[@]} - 1; i >= 0; i--)); do
    kill "${started_pids[i]}" 2>/dev/null && echo "stopped pid ${started_pids[i]}"
    # gone before we return: a next target that still saw it exiting would not start its own
    for _ in $(seq 100); do kill -0 "${started_pids[i]}" 2>/dev/null || break; sleep 0.1; done
  done
  started_pids=()
}

# Which virtualisation the VMs get: the same test as the Vagrantfile's.
virt_kind() { [ -e /dev/kvm ] && echo "KVM" || echo "qemu TCG emulation (no /dev/kvm)"; }

# vagrant_ensure_box: the local box unless XDPNET_BOX names another one.
vagrant_ensure_box() {
  if [ -z "${XDPNET_BOX:-}" ] || [ "$XDPNET_BOX" = xdpnet/bookworm64-local ]; then
    "$here/box/build.sh"
  fi
}

# vagrant_rsync VM...: the checkout into the VMs' /xdpnet, and their builds dropped when the tree
# differs from the one they were built from: rsync keeps the host's mtimes, so a source changed
# before the guest's last build looks older than its object and make would keep the stale one.
vagrant_rsync() {
  vagrant rsync "$@"
  local stamp vm
  stamp="$(git -C "$here/.." rev-parse HEAD)-$(git -C "$here/.." diff HEAD | sha1sum | cut -c1-12)"
  for vm in "$@"; do
    vagrant ssh "$vm" -c "cd /xdpnet && [ \"\$(cat build/.tree 2>/dev/null)\" = $stamp ] ||
      { sudo rm -rf build dist && sudo mkdir -p build && echo $stamp | sudo tee build/.tree >/dev/null; }"
  done
}

# Every VM target's start: the packages, libvirt's daemons for this run (stopped on exit), the box.
vagrant_prepare() {
  vagrant_deps
  libvirt_start; trap libvirt_stop EXIT
  vagrant_ensure_box
}
