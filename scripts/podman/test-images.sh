#!/usr/bin/env bash
# Builds the images the Podman tests use, from this machine's own files (no registry, no
# network), unless they exist already:
#   localhost/atex-test-bb    busybox only (about 2 MB)
#   localhost/atex-test-mini  bash, GNU coreutils, tar, grep, sed, procps, busybox for the
#                             rest (about 30 MB): enough for the FMF executor
# Each rootfs is packed by `atex podman image import` when ATEX is set to the atex binary,
# else by `podman import`.
set -euo pipefail
: "${CONTAINERS_CONF:=$(cd "$(dirname "$0")" && pwd)/containers.conf}"
export CONTAINERS_CONF

import() { # DIR TAG CHANGES...
    local dir=$1 tag=$2; shift 2
    if [ -n "${ATEX:-}" ]; then
        local args=()
        for c in "$@"; do args+=(--change "$c"); done
        "$ATEX" -q podman image import "$dir" "$tag" "${args[@]}" >/dev/null
    else
        local args=()
        for c in "$@"; do args+=(--change "$c"); done
        tar --numeric-owner -C "$dir" -c . | podman import -q "${args[@]}" - "$tag" >/dev/null
    fi
}

R=""
trap '[ -n "$R" ] && rm -rf "$R"' EXIT

if ! podman image exists localhost/atex-test-bb; then
    R=$(mktemp -d)
    mkdir -p "$R"/bin "$R"/tmp "$R"/etc "$R"/root "$R"/proc "$R"/sys "$R"/dev
    chmod 1777 "$R"/tmp
    cp /bin/busybox "$R"/bin/
    for a in $(/bin/busybox --list); do [ "$a" = busybox ] || ln -s busybox "$R/bin/$a"; done
    echo 'root:x:0:0:root:/root:/bin/sh' > "$R"/etc/passwd
    echo 'root:x:0:' > "$R"/etc/group
    import "$R" localhost/atex-test-bb:latest 'CMD ["/bin/sh"]' 'ENV PATH=/bin'
    rm -rf "$R"; R=""
fi

if ! podman image exists localhost/atex-test-mini; then
    R=$(mktemp -d)
    mkdir -p "$R"/usr/bin "$R"/usr/sbin "$R"/usr/lib "$R"/usr/lib64 "$R"/etc "$R"/tmp "$R"/root \
        "$R"/var/tmp "$R"/proc "$R"/sys "$R"/dev
    chmod 1777 "$R"/tmp "$R"/var/tmp
    for d in bin sbin lib lib64; do ln -s usr/$d "$R/$d"; done
    bins="$(dpkg -L coreutils procps | grep -E '^/(usr/)?s?bin/') /bin/bash /bin/tar /bin/gzip \
        /usr/bin/find /usr/bin/xargs /bin/grep /bin/sed /usr/bin/diff /usr/bin/mawk /usr/bin/env \
        /usr/bin/hostname /usr/bin/setsid /usr/bin/timeout"
    for b in $bins; do
        [ -e "$b" ] || continue
        t="$R/usr/${b#/usr/}"
        cp -L "$b" "$t" 2>/dev/null || continue
        ldd "$b" 2>/dev/null | grep -o '/[^ ]*' | while read -r l; do
            dst="$R/usr/${l#/usr/}"
            mkdir -p "$(dirname "$dst")"
            [ -e "$dst" ] || cp -L "$l" "$dst"
        done
    done
    ln -sf mawk "$R"/usr/bin/awk
    cp /bin/busybox "$R"/usr/bin/
    for a in $(/bin/busybox --list); do
        [ -e "$R/usr/bin/$a" ] || [ -e "$R/usr/sbin/$a" ] || ln -s busybox "$R/usr/bin/$a"
    done
    echo 'root:x:0:0:root:/root:/bin/bash' > "$R"/etc/passwd
    echo 'root:x:0:' > "$R"/etc/group
    import "$R" localhost/atex-test-mini:latest 'CMD ["/bin/bash"]' \
        'ENV PATH=/usr/sbin:/usr/bin:/sbin:/bin'
    rm -rf "$R"; R=""
fi

# localhost/atex-test-debsd: Debian minbase with systemd as init (about 120 MB; needs the
# Debian mirror, about 70 s). Only with ATEX_PODMAN_SYSTEMD_IMAGE=1 (run-tests.sh sets it).
if [ "${ATEX_PODMAN_SYSTEMD_IMAGE:-0}" = 1 ] && ! podman image exists localhost/atex-test-debsd; then
    R=$(mktemp -d)
    mirror="${ATEX_DEBIAN_MIRROR:-http://deb.debian.org/debian}"
    debootstrap --variant=minbase --include=procps,systemd,systemd-sysv,dbus bookworm "$R" "$mirror" >/dev/null
    rm -rf "$R"/var/cache/apt/archives/*.deb "$R"/var/lib/apt/lists/* "$R"/usr/share/doc/* \
        "$R"/usr/share/man/* "$R"/usr/share/info/* "$R"/usr/share/locale/*
    import "$R" localhost/atex-test-debsd:latest 'CMD ["/sbin/init"]' 'STOPSIGNAL SIGRTMIN+3' \
        'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin'
    rm -rf "$R"; R=""
fi
