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
# VM tests (feature libvirt): the tests start private libvirtd/virtlogd instances and stop
# them at the end (tests/support/virt.rs): session daemons of an unprivileged test user
# (qemu:///session) and root system daemons (qemu:///system, QEMU as libvirt-qemu) in their
# own mount and PID namespaces (catatonit reaping), so no init system is needed and the machine's libvirt state
# is not touched. QEMU runs with TCG; the guest is built by scripts/vm-guest.sh from
# Debian's kernel package, busybox and the host's sshd.
need virsh libvirt-clients
need /usr/sbin/libvirtd libvirt-daemon
need /usr/sbin/virtlogd libvirt-daemon
dpkg -s libvirt-daemon-driver-qemu >/dev/null 2>&1 || need_pkgs+=(libvirt-daemon-driver-qemu)
need qemu-system-x86_64 qemu-system-x86
need busybox busybox-static
# The transient provisioner tries passt first (libvirt 9.0 rejects it: tests/virt.rs checks
# the fallback to QEMU user networking).
need passt passt
need mke2fs e2fsprogs
need setpriv util-linux
need catatonit catatonit
need flock util-linux
need pip3 python3-pip
# tests/cli_resume.rs reads `--compress` results back with the real xz and gzip.
need xz xz-utils
need gzip gzip
# --- beakerlib ---
# The BeakerLib tests (tests/beakerlib.rs, tests/beakerlib_ssh.rs) install the real
# BeakerLib, the unchanged upstream archive kept in tests/fixtures/third-party/beakerlib
# (a copy of ../shared/third-party/beakerlib; see its README), with its top-level
# `make install`: that needs make, patch and perl (pod2man).
need make make
need patch patch
need pod2man perl
if [ -z "${ATEX_BEAKERLIB_TARBALL:-}" ]; then
    for d in tests/fixtures/third-party/beakerlib ../shared/third-party/beakerlib; do
        t="$(ls "$d"/beakerlib-*.tar.gz 2>/dev/null | tail -n 1 || true)"
        if [ -n "$t" ]; then
            ATEX_BEAKERLIB_TARBALL="$(cd "$(dirname "$t")" && pwd)/$(basename "$t")"
            export ATEX_BEAKERLIB_TARBALL
            break
        fi
    done
fi
if [ -z "${ATEX_BEAKERLIB_TARBALL:-}" ]; then
    echo "the BeakerLib archive (tests/fixtures/third-party/beakerlib/beakerlib-*.tar.gz) is missing; set ATEX_BEAKERLIB_TARBALL" >&2
    exit 1
fi
# --- beakerlib end ---
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

# The Jenkins xUnit plugin's JUnit schema (junit-10.xsd, MIT licence), which tests/report.rs
# and tests/report_html.rs validate atex's JUnit XML against. Third-party, so it is not kept
# in the repository: it is taken from pytest's source distribution on PyPI, which ships the
# same schema as testing/example_scripts/junit-10.xsd, and checked against a pinned sha256.
# Cached in target/third-party/.
junit_xsd_version=8.3.5
junit_xsd_sha256=a1a816f58d1bf95ebabf371994df0b9246dee66ea9572fbec4f9296f1b2c0ff6
fetch_junit_xsd() {
    local dir=target/third-party
    local xsd=$dir/junit-10.xsd
    local sdist=$dir/pytest-$junit_xsd_version.tar.gz
    if [ -f "$xsd" ] && echo "$junit_xsd_sha256  $xsd" | sha256sum --check --status; then
        return 0
    fi
    mkdir -p "$dir"
    if [ ! -f "$sdist" ]; then
        # --no-binary: the sdist (the wheel has no testing/); --no-deps: nothing else.
        if ! python3 -m pip download --quiet --disable-pip-version-check --no-deps \
            --no-binary :all: "pytest==$junit_xsd_version" -d "$dir"; then
            echo "pip download exited non-zero; checking whether it saved $sdist anyway" >&2
        fi
    fi
    if [ ! -f "$sdist" ]; then
        echo "cannot get $sdist from PyPI (needed for the JUnit schema)" >&2
        exit 1
    fi
    tar -xzf "$sdist" -O "pytest-$junit_xsd_version/testing/example_scripts/junit-10.xsd" >"$xsd.tmp"
    if ! echo "$junit_xsd_sha256  $xsd.tmp" | sha256sum --check --status; then
        echo "junit-10.xsd from $sdist does not have the pinned sha256 $junit_xsd_sha256" >&2
        rm -f "$xsd.tmp"
        exit 1
    fi
    mv "$xsd.tmp" "$xsd"
}
fetch_junit_xsd
export ATEX_JUNIT_XSD="$PWD/target/third-party/junit-10.xsd"

# --- podman ---
# Containers as remotes (tests/podman.rs): rootful podman with runc (crun fails on this
# machine type's cgroup v1 hybrid mode) and netavark named explicitly, with iptables, which
# netavark runs to set up the bridge network but does not depend on (without it every
# container fails to start: "netavark: No such file or directory"); podman is pointed at
# the project's own containers.conf through CONTAINERS_CONF (nothing under /etc is
# edited). The test images are built locally from this machine's files (and a Debian
# minbase with systemd by debootstrap); no registry is used.
podman_pkgs=()
for p in podman runc netavark aardvark-dns iptables catatonit conmon busybox-static debootstrap; do
    dpkg -s "$p" >/dev/null 2>&1 || podman_pkgs+=("$p")
done
if [ ${#podman_pkgs[@]} -gt 0 ]; then
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq --no-install-recommends "${podman_pkgs[@]}" >/dev/null
fi
export CONTAINERS_CONF="$PWD/scripts/podman/containers.conf"
cargo build --quiet --bin atex --all-features
ATEX="$PWD/target/debug/atex" ATEX_PODMAN_SYSTEMD_IMAGE=1 scripts/podman/test-images.sh
# --- podman end ---

export CARGO_TERM_COLOR=never
cargo fmt --all --check
python3 scripts/import-cycles.py
cargo clippy --all-targets --all-features -- -D warnings
cargo clippy --all-targets -- -D warnings
cargo check --lib --no-default-features
RUSTDOCFLAGS="-D warnings" cargo doc --no-deps --all-features
cargo test --all-features
