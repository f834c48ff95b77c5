#!/usr/bin/env bash
# Builds the small bootable guest the VM tests use, from this machine's own Debian packages:
#
#   * the kernel of `linux-image-amd64`, fetched with `apt-get download` and unpacked with
#     `dpkg-deb -x` (never installed, so no initramfs hooks run);
#   * an initramfs: busybox-static, the few modules a virtio disk and an e1000 NIC need, and
#     an /init that mounts /dev/vda (ext4) and switches to it;
#   * a raw ext4 root image made with `mke2fs -d`: busybox (init, shell, tools), the host's
#     bash, sshd and sftp-server with their libraries, a baked host key and root's
#     authorized key (the client key is kept next to the image);
#   * origin.xml: a libvirt domain (type qemu: TCG, direct kernel boot) that boots it.
#
# Usage: scripts/vm-guest.sh [CACHE_DIR]      (default: target/vm-guest)
# Prints the guest directory (CACHE_DIR/<hash of the inputs>) as its last line. A guest
# already built from the same inputs is reused; parallel callers wait for one build.
# Needs root (apt-get download, files owned by root in the image), busybox-static,
# openssh-server, e2fsprogs and gzip.
set -euo pipefail

here="$(cd "$(dirname "$0")" && pwd)"
cache="${1:-$here/../target/vm-guest}"
mkdir -p "$cache"
cache="$(cd "$cache" && pwd)"
# qemu runs as another user (libvirt-qemu, or the session user): keep the path readable.
chmod 0755 "$cache"

find_kernel() {
    apt-cache depends linux-image-amd64 2>/dev/null | awk '/Depends: linux-image-[0-9]/{print $2; exit}'
}
kpkg="$(find_kernel)"
if [ -z "$kpkg" ] && [ "$(id -u)" -eq 0 ]; then
    apt-get update -qq >/dev/null 2>&1 || true
    kpkg="$(find_kernel)"
fi
if [ -z "$kpkg" ]; then
    echo "vm-guest: cannot find the kernel package of linux-image-amd64 (apt-get update?)" >&2
    exit 1
fi
kver_pkg="$(apt-cache show --no-all-versions "$kpkg" | awk '/^Version:/{print $2; exit}')"
versions="$(dpkg-query -W -f='${Package}=${Version}\n' busybox-static openssh-server openssh-sftp-server bash libc6 2>/dev/null || true)"
key="$( { sha256sum "$0" | cut -d' ' -f1; echo "$kpkg=$kver_pkg"; echo "$versions"; } | sha256sum | cut -c1-16)"
out="$cache/$key"

exec 9>"$cache/.lock"
flock 9
if [ -f "$out/.complete" ]; then
    echo "$out"
    exit 0
fi

work="$(mktemp -d "$cache/.build-XXXXXX")"
trap 'rm -rf "$work"' EXIT
cd "$work"

# --- kernel --------------------------------------------------------------------------
apt-get download -q "$kpkg" >/dev/null 2>apt.log || { cat apt.log >&2; exit 1; }
dpkg-deb -x "$kpkg"_*.deb kernel
kver="${kpkg#linux-image-}"
moddir="kernel/lib/modules/$kver/kernel"
vmlinuz="kernel/boot/vmlinuz-$kver"
[ -f "$vmlinuz" ] || { echo "vm-guest: no $vmlinuz in $kpkg" >&2; exit 1; }

# Under TCG, unpacking the compressed kernel (xz) in the guest is about half of a boot.
# QEMU boots an uncompressed ELF kernel directly through its PVH entry point (the Xen
# note PHYS32_ENTRY, CONFIG_PVH): unpack it here once, and use it when it has that entry.
kernel=vmlinuz
if python3 - "$vmlinuz" vmlinux <<'PY'
import struct, sys
src, dst = sys.argv[1], sys.argv[2]
d = open(src, "rb").read()
if d[0x202:0x206] != b"HdrS":
    sys.exit("not a bzImage")
setup = (d[0x1F1] or 4) + 1
offset, length = struct.unpack_from("<II", d, 0x248)
payload = d[setup * 512 + offset : setup * 512 + offset + length]
if payload.startswith(b"\xfd7zXZ\x00"):
    import lzma
    elf = lzma.LZMADecompressor(format=lzma.FORMAT_XZ).decompress(payload)
elif payload.startswith(b"\x1f\x8b"):
    import zlib
    elf = zlib.decompressobj(16 + zlib.MAX_WBITS).decompress(payload)
else:
    sys.exit("payload compressed in an unsupported format")
if elf[:4] != b"\x7fELF" or elf[4] != 2:
    sys.exit("payload is not a 64-bit ELF")
phoff = struct.unpack_from("<Q", elf, 0x20)[0]
phentsize, phnum = struct.unpack_from("<HH", elf, 0x36)
pvh = False
for i in range(phnum):
    kind, _, off, _, _, size = struct.unpack_from("<IIQQQQ", elf, phoff + i * phentsize)
    if kind != 4:  # PT_NOTE
        continue
    q = off
    while q + 12 <= off + size:
        namesz, descsz, ntype = struct.unpack_from("<III", elf, q)
        name = elf[q + 12 : q + 12 + namesz]
        if name == b"Xen\x00" and ntype == 18:  # XEN_ELFNOTE_PHYS32_ENTRY
            pvh = True
        q += 12 + ((namesz + 3) & ~3) + ((descsz + 3) & ~3)
if not pvh:
    sys.exit("no PVH entry point")
open(dst, "wb").write(elf)
PY
then
    kernel=vmlinux
else
    echo "vm-guest: booting the compressed kernel (no PVH entry to use)" >&2
fi

# The modules a virtio disk with ext4 and an e1000 NIC need, with their dependencies (read
# from each module's `depends=` field: there is no modules.dep without depmod), in load order.
mkdir -p initrd/bin initrd/dev initrd/proc initrd/sys initrd/newroot initrd/modules
cp /bin/busybox initrd/bin/busybox
declare -A modpath=()
while IFS= read -r f; do
    b="$(basename "$f" .ko)"
    modpath[${b//-/_}]="$f"
done < <(find "$moddir" -name '*.ko')
declare -A loaded=()
n=0
add_module() {
    local name="${1//-/_}" dep deps
    [ -n "${loaded[$name]:-}" ] && return 0
    local f="${modpath[$name]:-}"
    [ -n "$f" ] || { echo "vm-guest: module $name missing from $kpkg" >&2; exit 1; }
    deps="$(grep -a -o 'depends=[A-Za-z0-9_,-]*' "$f" | head -n1 | cut -d= -f2)"
    for dep in ${deps//,/ }; do add_module "$dep"; done
    loaded[$name]=1
    n=$((n + 1))
    cp "$f" "initrd/modules/$(printf '%02d' $n)-$name.ko"
}
for m in crc32c_generic ext4 virtio_pci virtio_blk e1000; do add_module "$m"; done

cat > initrd/init <<'EOF'
#!/bin/busybox sh
export PATH=/bin
/bin/busybox --install -s /bin
mount -t proc proc /proc
mount -t sysfs sys /sys
mount -t devtmpfs dev /dev
for m in /modules/*.ko; do insmod "$m" || echo "init: insmod $m failed"; done
i=0
while [ ! -b /dev/vda ] && [ $i -lt 200 ]; do sleep 0.05; i=$((i + 1)); done
if mount -t ext4 -o rw /dev/vda /newroot; then
    umount /proc /sys
    mount --move /dev /newroot/dev
    exec switch_root /newroot /sbin/init
fi
echo "init: cannot mount /dev/vda"
exec sh
EOF
chmod 0755 initrd/init
(cd initrd && find . | busybox cpio -o -H newc 2>/dev/null | gzip -1) > initrd.gz

# --- root file system -----------------------------------------------------------------
r=root
mkdir -p $r/{bin,sbin,usr/bin,usr/sbin,usr/lib/openssh,lib64,etc/ssh,dev,proc,sys,run,tmp,var/tmp,var/log,root/.ssh,mnt}
chmod 1777 $r/tmp $r/var/tmp
chmod 0700 $r/root $r/root/.ssh
cp /bin/busybox $r/bin/busybox
for applet in $(busybox --list-full); do
    [ -e "$r/$applet" ] || ln -s /bin/busybox "$r/$applet"
done
copy_with_libs() {
    local bin="$1" lib
    mkdir -p "$r$(dirname "$bin")"
    rm -f "$r$bin"
    cp -L "$bin" "$r$bin"
    for lib in $(ldd "$bin" | awk '/=> \//{print $3} /^\t\/lib/{print $1}'); do
        mkdir -p "$r$(dirname "$lib")"
        [ -e "$r$lib" ] || cp -L "$lib" "$r$lib"
    done
}
copy_with_libs /bin/bash
copy_with_libs /usr/sbin/sshd
copy_with_libs /usr/lib/openssh/sftp-server

cat > $r/etc/passwd <<'EOF'
root:x:0:0:root:/root:/bin/sh
sshd:x:100:65534:sshd privsep:/run/sshd:/bin/false
nobody:x:65534:65534:nobody:/nonexistent:/bin/false
EOF
cat > $r/etc/shadow <<'EOF'
root:*:19000:0:99999:7:::
sshd:*:19000:0:99999:7:::
nobody:*:19000:0:99999:7:::
EOF
chmod 0600 $r/etc/shadow
printf 'root:x:0:\nnogroup:x:65534:\n' > $r/etc/group
echo atex-guest > $r/etc/hostname
printf '127.0.0.1 localhost\n::1 localhost\n' > $r/etc/hosts
printf 'passwd: files\ngroup: files\nshadow: files\nhosts: files dns\n' > $r/etc/nsswitch.conf
printf '/bin/sh\n/bin/bash\n' > $r/etc/shells
cat > $r/etc/ssh/sshd_config <<'EOF'
Port 22
HostKey /etc/ssh/ssh_host_ed25519_key
PidFile /run/sshd.pid
PermitRootLogin prohibit-password
PubkeyAuthentication yes
AuthorizedKeysFile .ssh/authorized_keys
PasswordAuthentication no
KbdInteractiveAuthentication no
UsePAM no
UseDNS no
StrictModes no
MaxSessions 100
MaxStartups 100:30:200
Subsystem sftp /usr/lib/openssh/sftp-server
AcceptEnv LANG LC_* ATEX_* TMT_*
EOF
ssh-keygen -q -t ed25519 -N '' -C atex-guest-host -f $r/etc/ssh/ssh_host_ed25519_key
ssh-keygen -q -t ed25519 -N '' -C atex-guest-client -f id_ed25519
cp id_ed25519.pub $r/root/.ssh/authorized_keys
chmod 0600 $r/root/.ssh/authorized_keys

mkdir -p $r/usr/share/udhcpc
cat > $r/usr/share/udhcpc/default.script <<'EOF'
#!/bin/sh
case "$1" in
    bound|renew)
        # Only a lease that differs from the address /etc/rc set changes it (flushing
        # would cut a session opened meanwhile).
        if ! ip -4 addr show dev "$interface" | grep -q " $ip/${mask:-24} "; then
            ip addr flush dev "$interface"
            ip addr add "$ip/${mask:-24}" dev "$interface"
            for r in $router; do ip route add default via "$r" dev "$interface"; break; done
        fi
        : > /etc/resolv.conf
        for d in $dns; do echo "nameserver $d" >> /etc/resolv.conf; done
        ;;
esac
EOF
chmod 0755 $r/usr/share/udhcpc/default.script
# sshd -r: no re-exec per connection (under TCG loading sshd again costs a second or so
# before each session's banner).
cat > $r/etc/inittab <<'EOF'
::sysinit:/etc/rc
::respawn:/usr/sbin/sshd -D -e -r
::ctrlaltdel:/sbin/reboot
::shutdown:/bin/sync
::shutdown:/bin/umount -a -r
::shutdown:/bin/mount -o remount,ro /
EOF
cat > $r/etc/rc <<'EOF'
#!/bin/sh
mount -t proc proc /proc
mount -t sysfs sys /sys
mkdir -p /dev/pts
mount -t devpts devpts /dev/pts
mount -t tmpfs -o mode=0755 tmpfs /run
mkdir -m 0755 /run/sshd
mount -o remount,rw /
hostname -F /etc/hostname
ip link set lo up
ip link set eth0 up
# QEMU's user networking always gives the guest 10.0.2.15 behind 10.0.2.2: set that at once,
# so sshd answers as soon as the link is up (DHCP waits seconds for the emulated link);
# DHCP (another network, passt) goes on in the background and changes what differs.
ip addr add 10.0.2.15/24 dev eth0
ip route add default via 10.0.2.2
udhcpc -i eth0 -q -f -n -t 20 -T 1 -s /usr/share/udhcpc/default.script >/dev/null 2>&1 &
echo "atex-guest: network configured"
EOF
chmod 0755 $r/etc/rc
printf 'export PATH=/usr/sbin:/usr/bin:/sbin:/bin\n' > $r/etc/profile

mke2fs -q -t ext4 -L atex-root -d $r root.img 96M >/dev/null 2>&1 \
    || mke2fs -t ext4 -L atex-root -d $r root.img 96M

# --- the origin domain ----------------------------------------------------------------
mkdir -p "$out.new"
if [ "$kernel" = vmlinux ]; then
    mv vmlinux "$out.new/vmlinux"
else
    mv "$vmlinuz" "$out.new/vmlinuz"
fi
mv initrd.gz root.img id_ed25519 id_ed25519.pub "$out.new/"
cp $r/etc/ssh/ssh_host_ed25519_key.pub "$out.new/host_key.pub"
cat > "$out.new/origin.xml" <<EOF
<domain type='qemu'>
  <name>@NAME@</name>
  <memory unit='MiB'>256</memory>
  <vcpu>1</vcpu>
  <os>
    <type arch='x86_64' machine='pc'>hvm</type>
    <kernel>$out/$kernel</kernel>
    <initrd>$out/initrd.gz</initrd>
    <cmdline>console=ttyS0 quiet panic=-1 mitigations=off cryptomgr.notests</cmdline>
  </os>
  <features><acpi/></features>
  <cpu mode='custom' match='exact'><model fallback='allow'>qemu64</model><feature policy='require' name='rdrand'/></cpu>
  <clock offset='utc'/>
  <on_poweroff>destroy</on_poweroff>
  <on_reboot>restart</on_reboot>
  <on_crash>destroy</on_crash>
  <devices>
    <disk type='file' device='disk'>
      <driver name='qemu' type='raw'/>
      <source file='$out/root.img'/>
      <target dev='vda' bus='virtio'/>
    </disk>
    <interface type='user'>
      <model type='e1000'/>
    </interface>
    <controller type='usb' model='none'/>
    <serial type='pty'/>
    <console type='pty'/>
    <memballoon model='none'/>
  </devices>
</domain>
EOF
chmod -R a+rX "$out.new"
chmod 0600 "$out.new/id_ed25519"
rm -rf "$out"
mv "$out.new" "$out"
touch "$out/.complete"
# Older builds of other inputs are not needed any more.
find "$cache" -mindepth 1 -maxdepth 1 -type d ! -name "$key" ! -name '.build-*' -exec rm -rf {} +
echo "$out"
