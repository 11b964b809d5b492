#!/usr/bin/env bash
# Builds a vagrant-libvirt box of Debian 12 from Debian's package mirror alone and adds it to
# vagrant as $BOX_NAME. Usage: build.sh [--force]. Needs root, debootstrap, qemu-utils,
# grub-pc-bin, vagrant (the Makefile's vagrant-deps step installs them).
#
# The disk is an MBR disk with one ext4 partition and GRUB in the MBR, so the box boots on any
# libvirt host like a downloaded one (no host-side kernel/initrd paths).
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
BOX_NAME=${BOX_NAME:-xdpnet/bookworm64-local}
OUT=${BOX_OUT:-$here/../../build/vagrant-box}
DISK_GB=${BOX_DISK_GB:-8}
MIRROR=${DEBIAN_MIRROR:-http://deb.debian.org/debian}
force=0; [ "${1:-}" = --force ] && force=1
# shellcheck source=packages.sh
. "$here/packages.sh"

if [ $force = 0 ] && vagrant box list 2>/dev/null | grep -q "^$BOX_NAME "; then
  echo "box $BOX_NAME already added (make vagrant-box FORCE=1 rebuilds it)"; exit 0
fi

mkdir -p "$OUT"; OUT=$(cd "$OUT" && pwd)
root=$OUT/rootfs mnt=$OUT/mnt raw=$OUT/disk.raw loop=
cleanup() {
  for m in "$mnt/dev" "$mnt/proc" "$mnt/sys" "$mnt" "$root/proc" "$root/sys"; do
    mountpoint -q "$m" 2>/dev/null && umount -l "$m"
  done
  [ -n "$loop" ] && losetup -d "$loop" 2>/dev/null
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
key=$(find /usr/share/rubygems-integration /opt/vagrant -name vagrant.pub -path '*keys*' 2>/dev/null | head -1)
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

# 3. Disk: MBR, one ext4 partition filled from the rootfs, GRUB in the MBR.
rm -f "$raw"; truncate -s "${DISK_GB}G" "$raw"
echo 'start=2048, type=83, bootable' | sfdisk -q "$raw"
loop=$(losetup -f --show -P "$raw")
part=${loop}p1
for _ in 1 2 3 4 5; do [ -b "$part" ] && break; sleep 0.2; done
mkfs.ext4 -q -L root -d "$root" "$part"
uuid=$(blkid -s UUID -o value "$part")
mkdir -p "$mnt"; mount "$part" "$mnt"
echo "UUID=$uuid / ext4 errors=remount-ro 0 1" > "$mnt/etc/fstab"
kver=$(basename "$(ls -d "$mnt"/lib/modules/* | head -1)")
grub-install --target=i386-pc --boot-directory="$mnt/boot" --modules="part_msdos ext2" "$loop" 2>&1 | grep -v '^Installing for' || true
# net.ifnames=0: eth0/eth1 as in Debian's own Vagrant boxes, so vagrant's network config matches.
cat > "$mnt/boot/grub/grub.cfg" <<EOF
set timeout=0
menuentry "Debian 12, Linux $kver" {
  search --no-floppy --fs-uuid --set=root $uuid
  linux /boot/vmlinuz-$kver root=UUID=$uuid ro net.ifnames=0 console=tty0 console=ttyS0,115200
  initrd /boot/initrd.img-$kver
}
EOF
umount "$mnt"; losetup -d "$loop"; loop=

# 4. Box: box.img (qcow2) + metadata.json, as vagrant-libvirt reads them.
rm -rf "$OUT/box"; mkdir -p "$OUT/box"
qemu-img convert -c -O qcow2 "$raw" "$OUT/box/box.img"
rm -f "$raw"
printf '{"provider":"libvirt","format":"qcow2","virtual_size":%d}\n' "$DISK_GB" > "$OUT/box/metadata.json"
cp "$here/Vagrantfile.box" "$OUT/box/Vagrantfile"
tar -C "$OUT/box" -czf "$OUT/xdpnet-bookworm64.box" metadata.json Vagrantfile box.img
vagrant box add --force --name "$BOX_NAME" "$OUT/xdpnet-bookworm64.box"
echo "box $BOX_NAME added (Debian 12, kernel $kver, $(du -h "$OUT/box/box.img" | cut -f1) qcow2)"
