#!/usr/bin/env bash
# Builds a vagrant-libvirt box of Debian 12 from Debian's package mirror alone and adds it to
# vagrant as $BOX_NAME. Usage: build.sh [--force]. Needs root, debootstrap, qemu-utils,
# grub-pc-bin, vagrant (the Makefile's vagrant-deps step installs them).
#
# The disk is an MBR disk with one ext4 partition and GRUB in the MBR, so the box boots on any
# libvirt host like a downloaded one (no host-side kernel/initrd paths). Needs no loop device.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
BOX_NAME=${BOX_NAME:-xdpnet/bookworm64-local}
OUT=${BOX_OUT:-$here/../../build/vagrant-box}
DISK_GB=${BOX_DISK_GB:-8}
MIRROR=${DEBIAN_MIRROR:-http://deb.debian.org/debian}
force=0; [ "${1:-}" = --force ] && force=1
# shellcheck source=packages.sh
. "$here/packages.sh"
. "$here/../libvirt.sh"
vagrant_deps

if [ $force = 0 ] && vagrant box list 2>/dev/null | grep -q "^$BOX_NAME "; then
  echo "box $BOX_NAME already added (make vagrant-box FORCE=1 rebuilds it)"; exit 0
fi

mkdir -p "$OUT"; OUT=$(cd "$OUT" && pwd)
root=$OUT/rootfs raw=$OUT/disk.raw
cleanup() {
  for m in "$root/proc" "$root/sys" "$root/dev"; do mountpoint -q "$m" 2>/dev/null && umount -l "$m"; done
  true
}
trap cleanup EXIT

# 1. Root filesystem, built natively (fast) rather than inside the emulated guest.
if [ ! -e "$root/.debootstrap-done" ] || [ $force = 1 ]; then
  rm -rf "$root"
  echo "debootstrap bookworm into $root ($(box_packages | wc -w) packages requested)"
  debootstrap --variant=minbase --include="$(box_packages | tr ' ' ,)" \
    bookworm "$root" "$MIRROR" > "$OUT/debootstrap.log" 2>&1 \
    || { tail -30 "$OUT/debootstrap.log" >&2; exit 1; }
  touch "$root/.debootstrap-done"
fi

# 2. What makes it a Vagrant box: user vagrant with the insecure key, passwordless sudo,
#    DHCP on eth0 (vagrant-libvirt's management NIC) through systemd-networkd, sshd.
key=$(find /usr/share/rubygems-integration /opt/vagrant -name vagrant.pub -path '*keys*' 2>/dev/null | head -1 || true)
[ -n "$key" ] || { echo "vagrant's insecure public key not found (is vagrant installed?)" >&2; exit 1; }
chroot "$root" /bin/sh -ec '
  id vagrant >/dev/null 2>&1 || useradd -m -s /bin/bash -G sudo vagrant
  echo vagrant:vagrant | chpasswd
  echo "vagrant ALL=(ALL) NOPASSWD:ALL" > /etc/sudoers.d/vagrant; chmod 440 /etc/sudoers.d/vagrant
  install -d -m 700 -o vagrant -g vagrant /home/vagrant/.ssh
  systemctl enable systemd-networkd ssh >/dev/null 2>&1
  echo debian > /etc/hostname
'
install -m 600 "$key" "$root/home/vagrant/.ssh/authorized_keys"
chroot "$root" chown vagrant:vagrant /home/vagrant/.ssh/authorized_keys
cat > "$root/etc/systemd/network/10-eth0.network" <<'EOF'
[Match]
Name=eth0
[Network]
DHCP=ipv4
EOF
# sshd: no DNS lookups (slow without a resolver for the host's address under emulation).
echo "UseDNS no" > "$root/etc/ssh/sshd_config.d/vagrant.conf"
printf '127.0.0.1 localhost\n127.0.1.1 debian\n' > "$root/etc/hosts"
ln -sf /run/systemd/resolve/stub-resolv.conf "$root/etc/resolv.conf" 2>/dev/null || true
rm -f "$root/etc/ssh/ssh_host_"*   # regenerated per VM at first boot, below
# Each VM its own machine ID, made by systemd at first boot: networkd's DHCP client ID derives
# from it, and two VMs sharing one got one lease between them from libvirt's dnsmasq (each
# renewal took the other's address, and vagrant lost the first VM as "inaccessible").
: > "$root/etc/machine-id"; rm -f "$root/var/lib/dbus/machine-id"
cat > "$root/etc/systemd/system/ssh-hostkeys.service" <<'EOF'
[Unit]
Description=Generate this VM's own SSH host keys
Before=ssh.service
ConditionPathExists=!/etc/ssh/ssh_host_ed25519_key
[Service]
Type=oneshot
ExecStart=/usr/bin/ssh-keygen -A
[Install]
WantedBy=multi-user.target
EOF
chroot "$root" systemctl enable ssh-hostkeys.service systemd-resolved >/dev/null 2>&1 || true
apt_clean() { rm -rf "$root/var/cache/apt/archives/"*.deb "$root/var/lib/apt/lists/"*; }
apt_clean

# 3. Disk: MBR with one ext4 partition at 1 MiB, written by mkfs.ext4 -d at that offset (no
#    loop device or mount: containers often lack partition scanning), and GRUB's boot.img in
#    the MBR with core.img in the gap after it. grub-mkimage sets core.img's blocklist to its
#    own length and boot.img looks for it at sector 1 by default, which is where it goes.
uuid=$(cat /proc/sys/kernel/random/uuid)
kver=$(basename "$(ls -d "$root"/lib/modules/* | head -1)")
echo "UUID=$uuid / ext4 errors=remount-ro 0 1" > "$root/etc/fstab"
rm -rf "$root/boot/grub"; mkdir -p "$root/boot/grub"
cp -r /usr/lib/grub/i386-pc "$root/boot/grub/"
# net.ifnames=0: eth0/eth1 as in Debian's own Vagrant boxes, so vagrant's network config matches.
cat > "$root/boot/grub/grub.cfg" <<GRUB
set timeout=0
menuentry "Debian 12, Linux $kver" {
  search --no-floppy --fs-uuid --set=root $uuid
  linux /boot/vmlinuz-$kver root=UUID=$uuid ro net.ifnames=0 console=tty0 console=ttyS0,115200
  initrd /boot/initrd.img-$kver
}
GRUB
rm -f "$raw"; truncate -s "${DISK_GB}G" "$raw"
echo 'start=2048, type=83, bootable' | sfdisk -q "$raw"
mkfs.ext4 -q -F -L root -U "$uuid" -E offset=$((2048 * 512)) -d "$root" "$raw" $(( DISK_GB * 1024 * 1024 - 1024 ))k
grub-mkimage -O i386-pc -p '(hd0,msdos1)/boot/grub' -o "$OUT/core.img" \
  biosdisk part_msdos ext2 normal linux search search_fs_uuid gzio echo test
[ "$(stat -c %s "$OUT/core.img")" -lt $((2047 * 512)) ] || { echo "core.img does not fit before the partition" >&2; exit 1; }
dd if=/usr/lib/grub/i386-pc/boot.img of="$raw" bs=440 count=1 conv=notrunc status=none
dd if="$OUT/core.img" of="$raw" bs=512 seek=1 conv=notrunc status=none

# 4. Box: box.img (qcow2) + metadata.json, as vagrant-libvirt reads them.
rm -rf "$OUT/box"; mkdir -p "$OUT/box"
qemu-img convert -c -O qcow2 "$raw" "$OUT/box/box.img"
rm -f "$raw"
printf '{"provider":"libvirt","format":"qcow2","virtual_size":%d}\n' "$DISK_GB" > "$OUT/box/metadata.json"
cp "$here/Vagrantfile.box" "$OUT/box/Vagrantfile"
tar -C "$OUT/box" -cf "$OUT/xdpnet-bookworm64.box" metadata.json Vagrantfile box.img
vagrant box add --force --name "$BOX_NAME" "$OUT/xdpnet-bookworm64.box"
echo "box $BOX_NAME added (Debian 12, kernel $kver, $(du -h "$OUT/box/box.img" | cut -f1) qcow2)"
