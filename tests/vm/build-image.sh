#!/usr/bin/env bash
# Builds a minimal Debian guest for the VM tests (tests/vm.rs): systemd,
# systemd-udevd and Debian's kernel in a raw ext4 image, plus the kernel and
# initrd to boot it with. Root only (debootstrap, chroot).
#
# Usage: tests/vm/build-image.sh SUITE OUTDIR      (SUITE: bookworm, sid, …)
# Env:   MIRROR (default: the Debian mirror apt uses), IMG_SIZE (1600M),
#        CACHE (debootstrap's package cache, default target/vm/debs)
# Output: OUTDIR/rootfs.img OUTDIR/vmlinuz OUTDIR/initrd.img OUTDIR/build.txt
#
# What the guest runs comes over 9p at boot (tests/vm/guest/*.sh and the
# hostbridge binary), so a code change needs no rebuild; only this script and
# guest-entry.sh are baked in, and tests/vm.rs keys the cache on their hash.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
suite=${1:?suite}
out=$(realpath -m "${2:?outdir}")
root=$out/root
size=${IMG_SIZE:-1600M}
cache=$(realpath -m "${CACHE:-$here/../../target/vm/debs}")

# The mirror apt is configured with (deb822 "URIs:" or a one-line "deb URI suite").
apt_mirror() {
    {
        grep -h '^URIs:' /etc/apt/sources.list.d/*.sources 2>/dev/null | awk '{print $2}' || true
        grep -h '^deb ' /etc/apt/sources.list /etc/apt/sources.list.d/*.list 2>/dev/null | awk '{print $2}' || true
    } | grep -v security | head -n1 || true
}
mirror=${MIRROR:-$(apt_mirror)}
[ -n "$mirror" ] || { echo "no Debian mirror in apt's sources; set MIRROR" >&2; exit 1; }

t0=$(date +%s)
mkdir -p "$out" "$cache"
rm -rf "$root"
# minbase plus: systemd and udev (the subject), the kernel (its initrd is
# built in the chroot), jq to read `hostbridge status --json`, usbutils for
# lsusb in failure output. Suites other than bookworm also get podman: its
# quadlet generator checks the project's quadlet examples (bookworm's podman
# 4.3 predates quadlet).
include=systemd,systemd-sysv,udev,kmod,linux-image-amd64,usbutils,procps,jq
recorded="systemd udev linux-image-amd64"
if [ "$suite" != bookworm ]; then
    include=$include,podman
    recorded="$recorded podman"
fi
debootstrap --variant=minbase --cache-dir="$cache" --include="$include" \
    "$suite" "$root" "$mirror" >"$out/debootstrap.log" 2>&1 \
    || { tail -30 "$out/debootstrap.log" >&2; exit 1; }
# Suites with podman also carry a NUT container image: a second minbase
# root with Debian's nut-server and nut-client (usbhid-ups, upsd, upsc),
# as a tar the guest imports with `podman import` (the guest has no
# network). Its nut user has the ids Debian's package gave it there, not
# the guest's.
if [ "$suite" != bookworm ]; then
    nut=$out/nut-root
    rm -rf "$nut"
    debootstrap --variant=minbase --cache-dir="$cache" --include=nut-server,nut-client \
        "$suite" "$nut" "$mirror" >"$out/debootstrap-nut.log" 2>&1 \
        || { tail -30 "$out/debootstrap-nut.log" >&2; exit 1; }
    chroot "$nut" dpkg-query -W -f='${Package} ${Version} (NUT image)\n' nut-server >"$out/nut.txt"
    # What a container never reads, so that the guest's `podman import`
    # (most of the NUT boot's setup under TCG) has less to unpack: the
    # downloaded packages, udev's hardware database (NUT's rules file stays),
    # documentation and locales.
    rm -rf "$nut"/var/cache/apt/archives/*.deb "$nut"/var/cache/apt/*.bin "$nut"/var/lib/apt/lists/* \
        "$nut"/usr/lib/udev/hwdb.bin "$nut"/usr/lib/udev/hwdb.d "$nut"/usr/share/doc/* \
        "$nut"/usr/share/man/* "$nut"/usr/share/info/* "$nut"/usr/share/locale/* \
        "$nut"/usr/share/common-licenses "$nut"/var/cache/debconf/*-old
    mkdir -p "$root/var/lib/hb"
    tar -C "$nut" -cf "$root/var/lib/hb/nut-image.tar" .
    rm -rf "$nut"
fi
t1=$(date +%s)

echo hbvm >"$root/etc/hostname"
sed -i 's/^root:[^:]*:/root::/' "$root/etc/shadow"
echo '/dev/vda / ext4 rw,noatime 0 1' >"$root/etc/fstab"
# 9p in the initrd too (initramfs-tools; newer suites build theirs with
# dracut at install time, which is kept as it is).
if [ -d "$root/etc/initramfs-tools" ]; then
    printf '9p\n9pnet\n9pnet_virtio\n' >>"$root/etc/initramfs-tools/modules"
fi
install -m 0755 "$here/guest-entry.sh" "$root/usr/local/sbin/guest-entry.sh"
cat >"$root/etc/systemd/system/guest-entry.service" <<'UNIT'
[Unit]
Description=Run the host's VM test over 9p, then power off
After=systemd-udevd.service systemd-udev-trigger.service local-fs.target
Wants=systemd-udev-trigger.service

[Service]
Type=oneshot
ExecStart=/usr/local/sbin/guest-entry.sh
StandardOutput=tty
StandardError=tty
TTYPath=/dev/ttyS0
TTYReset=no
TTYVHangup=no

[Install]
WantedBy=multi-user.target
UNIT
ln -sf /etc/systemd/system/guest-entry.service \
    "$root/etc/systemd/system/multi-user.target.wants/guest-entry.service"
# Nothing else on the serial console, nothing slow at boot.
for u in serial-getty@ttyS0.service getty@tty1.service systemd-timesyncd.service \
    apt-daily.timer apt-daily-upgrade.timer e2scrub_reap.service; do
    ln -sf /dev/null "$root/etc/systemd/system/$u"
done
if [ -d "$root/etc/initramfs-tools" ]; then
    chroot "$root" update-initramfs -u -k all >/dev/null
fi
cp -L "$root/vmlinuz" "$out/vmlinuz"
cp -L "$root/initrd.img" "$out/initrd.img"
# shellcheck disable=SC2086 # a list of package names
chroot "$root" dpkg-query -W -f='${Package} ${Version}\n' $recorded >"$out/build.txt"
if [ -f "$out/nut.txt" ]; then cat "$out/nut.txt" >>"$out/build.txt" && rm "$out/nut.txt"; fi
rm -rf "$root"/var/cache/apt/*.bin "$root"/var/lib/apt/lists/* "$root"/usr/share/doc/* \
    "$root"/usr/share/man/* "$root"/usr/share/locale/*
t2=$(date +%s)

rm -f "$out/rootfs.img"
mkfs.ext4 -q -F -L hbroot -d "$root" "$out/rootfs.img" "$size"
t3=$(date +%s)
rm -rf "$root"
echo "image $suite: debootstrap $((t1 - t0)) s, configure $((t2 - t1)) s, mkfs $((t3 - t2)) s, total $((t3 - t0)) s" | tee -a "$out/build.txt"
