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
if [ ${#need_pkgs[@]} -gt 0 ]; then
    if [ "$(id -u)" -ne 0 ]; then
        echo "missing packages (install them as root): ${need_pkgs[*]}" >&2
        exit 1
    fi
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq --no-install-recommends "${need_pkgs[@]}" >/dev/null
fi

export CARGO_TERM_COLOR=never
cargo fmt --all --check
python3 scripts/import-cycles.py
cargo clippy --all-targets --all-features -- -D warnings
cargo check --lib --no-default-features
RUSTDOCFLAGS="-D warnings" cargo doc --no-deps --all-features
cargo test --all-features
