# Debian packages baked into the box. Sourced by build.sh; a unit test checks the list.
# What a Vagrant box needs, plus the project's own build/test packages (XDPNET_APT_PKGS, passed
# by the Makefile from APT_PKGS): installing clang/llvm/tshark inside an emulated guest takes
# many minutes per VM, natively here it takes seconds. Provisioning's `make setup` still
# installs whatever is missing, so a box without them (debian/bookworm64) works too.
BOX_BASE_PACKAGES="systemd-sysv systemd-resolved udev dbus openssh-server sudo
  linux-image-amd64 initramfs-tools iproute2 iputils-ping procps netbase
  ca-certificates curl rsync make xz-utils"
box_packages() { echo $BOX_BASE_PACKAGES ${XDPNET_APT_PKGS:-}; }
