#!/usr/bin/env bash
# Runs the whole atex test suite on a fresh machine: installs the system packages the
# tests need (Debian, as root), then formatting, lints, docs and every test.
set -euo pipefail
cd "$(dirname "$0")/.."

need_pkgs=()
need() { command -v "$1" >/dev/null 2>&1 || need_pkgs+=("$2"); }
need gzip gzip
need xz xz-utils
need git git
need /usr/sbin/sshd openssh-server
need /usr/lib/openssh/sftp-server openssh-sftp-server
need ssh openssh-client
need ssh-keygen openssh-client
need unshare util-linux
need ip iproute2
need script bsdutils
need ssh-agent openssh-client
need pgrep procps
need useradd passwd
need tar tar
need rsync rsync
need xmllint libxml2-utils
need chromium chromium
need chromedriver chromium-driver
need python3 python3-minimal
# VM tests (feature libvirt): a private session libvirtd runs QEMU (TCG); the guest is
# built by scripts/vm-guest.sh from Debian's kernel package, busybox and the host's sshd.
need virsh libvirt-clients
need /usr/sbin/libvirtd libvirt-daemon
need /usr/sbin/virtlogd libvirt-daemon
dpkg -s libvirt-daemon-driver-qemu >/dev/null 2>&1 || need_pkgs+=(libvirt-daemon-driver-qemu)
need qemu-system-x86_64 qemu-system-x86
need busybox busybox-static
need mke2fs e2fsprogs
need setpriv util-linux
need flock util-linux
if [ ${#need_pkgs[@]} -gt 0 ]; then
    if [ "$(id -u)" -ne 0 ]; then
        echo "missing packages (install them as root): ${need_pkgs[*]}" >&2
        exit 1
    fi
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    # Debian's qemu-system-x86 removes a newer (backports) qemu-utils: install the
    # qemu-utils of the same version with it, so that qemu-img stays available.
    if printf '%s\n' "${need_pkgs[@]}" | grep -qx qemu-system-x86; then
        qv="$(apt-cache show --no-all-versions qemu-system-x86 | awk '/^Version:/{print $2; exit}')"
        if apt-cache madison qemu-utils | awk '{print $3}' | grep -qxF "$qv"; then
            need_pkgs+=("qemu-utils=$qv")
        fi
    fi
    apt-get install -y -qq --no-install-recommends --allow-downgrades "${need_pkgs[@]}" >/dev/null
fi
# libvirt's QEMU driver looks this user up before reading any configuration.
id libvirt-qemu >/dev/null 2>&1 || useradd -r -U -M -s /usr/sbin/nologin libvirt-qemu

export CARGO_TERM_COLOR=never
cargo fmt --all --check
python3 scripts/import-cycles.py
cargo clippy --all-targets --all-features -- -D warnings
cargo check --lib --no-default-features
RUSTDOCFLAGS="-D warnings" cargo doc --no-deps --all-features
cargo test --all-features
