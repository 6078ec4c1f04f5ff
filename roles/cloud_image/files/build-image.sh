#!/bin/bash
# Build the euca.cloud cloud image: what a downloaded Debian "genericcloud" image is, made from
# Debian packages with no loop device, no device mapper and no mount outside a private mount
# namespace. A whole-disk image: an MBR with syslinux's boot code, a FAT boot partition holding
# syslinux (installed through mtools), the kernel, the initramfs and syslinux.cfg, and an ext4
# root filesystem made from a directory (mke2fs -d) at its partition's offset. systemd,
# cloud-init (NoCloud, then Ec2, then None), openssh-server, ifupdown with DHCP, a serial
# console on ttyS0. Built in a fresh directory next to OUT and renamed into place at the end, so
# an interrupted build never leaves an image that looks complete.
# Usage: build-image.sh OUT FILES SUITE MIRROR PACKAGES DISK_MB BOOT_MB NAME USER DIGEST
#   PACKAGES: comma-separated, installed with apt (no recommends) on top of debootstrap minbase.
set -euo pipefail
OUT=$1 FILES=$2 SUITE=$3 MIRROR=$4 PACKAGES=$5 DISK_MB=$6 BOOT_MB=$7 NAME=$8 USER=$9 DIGEST=${10}
IMAGE=disk.qcow2
BOOT_START=2048                         # sectors of 512 bytes: 1 MiB, as partitioning tools do
BOOT_SECTORS=$((BOOT_MB * 2048))
ROOT_START=$((BOOT_START + BOOT_SECTORS))
ROOT_SECTORS=$((DISK_MB * 2048 - ROOT_START))
[ "$ROOT_SECTORS" -gt 0 ] || { echo "build-image: a disk of $DISK_MB MiB leaves no room after a $BOOT_MB MiB boot partition" >&2; exit 1; }
IFS=, read -ra PKGS <<< "$PACKAGES"

PARENT=$(dirname "$OUT")
mkdir -p "$PARENT"
WORK=$(mktemp -d "$PARENT/.cloud-image-build.XXXXXX")
trap 'rm -rf "$WORK"' EXIT
R=$WORK/root
mkdir "$WORK/out"
log() { echo "build-image: $*" >&2; }
fail_with_log() { log "$1 failed; the end of its log:"; tail -40 "$2" >&2; exit 1; }

# 1. The root filesystem's tree. debootstrap and apt run in a private mount namespace (every
# mount they make vanishes with it, even on failure, before the trap removes WORK) and niced;
# policy-rc.d keeps the packages' daemons (sshd) from starting in the chroot. apt, not
# debootstrap --include, resolves the packages: it knows virtual packages.
log "debootstrap $SUITE from $MIRROR"
unshare --mount --propagation private -- nice -n 10 \
    debootstrap --variant=minbase "$SUITE" "$R" "$MIRROR" > "$WORK/debootstrap.log" 2>&1 \
    || fail_with_log debootstrap "$WORK/debootstrap.log"
cp -a "$FILES/rootfs/." "$R/"
printf '#!/bin/sh\nexit 101\n' > "$R/usr/sbin/policy-rc.d"
chmod 0755 "$R/usr/sbin/policy-rc.d"
log "apt-get install ${PKGS[*]}"
# shellcheck disable=SC2016  # expanded by the inner shell
unshare --mount --propagation private -- nice -n 10 sh -euc '
    R=$1; shift
    mount -t proc proc "$R/proc"
    mount -t sysfs sysfs "$R/sys"
    mount --bind /dev "$R/dev"
    export DEBIAN_FRONTEND=noninteractive LC_ALL=C.UTF-8
    chroot "$R" apt-get install -y --no-install-recommends -o Dpkg::Use-Pty=0 "$@"
    chroot "$R" apt-get clean
    # the kernel postinst made an initramfs before initramfs-tools was configured
    chroot "$R" update-initramfs -u -k all
' sh "$R" "${PKGS[@]}" > "$WORK/apt.log" 2>&1 || fail_with_log "apt-get install" "$WORK/apt.log"

# 2. Make it an image, not this machine's chroot: no policy-rc.d, no copy of this machine's
# resolv.conf, hosts or hostname, no machine id (systemd makes one at first boot), no ssh host
# keys (cloud-init makes them), no package lists, caches, logs, manuals or translations.
rm -f "$R/usr/sbin/policy-rc.d" "$R/etc/resolv.conf" "$R/etc/hostname" "$R/var/lib/dbus/machine-id" \
      "$R"/etc/ssh/ssh_host_*
: > "$R/etc/machine-id"
printf '127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\nff02::1\tip6-allnodes\nff02::2\tip6-allrouters\n' \
    > "$R/etc/hosts"
rm -rf "$R"/var/lib/apt/lists/* "$R"/var/cache/apt/*.bin "$R"/var/cache/debconf/*-old "$R"/var/lib/cloud \
       "$R"/tmp/* "$R"/usr/share/man/* "$R"/usr/share/info/* "$R/debootstrap"
find "$R/var/log" -type f -delete
find "$R/usr/share/doc" -mindepth 1 ! -type d ! -name copyright -delete
find "$R/usr/share/doc" -mindepth 1 -depth -type d -empty -delete
find "$R/usr/share/locale" -mindepth 1 -maxdepth 1 ! -name locale.alias -exec rm -rf {} +
# nothing that runs on a timer or waits at boot for what a short-lived guest never needs
systemctl --root "$R" mask apt-daily.timer apt-daily-upgrade.timer dpkg-db-backup.timer \
    e2scrub_all.timer e2scrub_reap.service fstrim.timer >/dev/null 2>&1
ROOT_UUID=$(cat /proc/sys/kernel/random/uuid)
printf 'UUID=%s / ext4 errors=remount-ro 0 1\n' "$ROOT_UUID" > "$R/etc/fstab"
printf '%s\n' "$NAME" > "$R/etc/euca-image"
cat > "$R/etc/cloud/cloud.cfg.d/92_euca_default_user.cfg" <<CFG
# euca.cloud: the user EC2 key pairs (public-keys) are given to, as Debian's cloud images do
system_info:
  default_user:
    name: $USER
CFG
KERNEL=$(cd "$R/boot" && ls vmlinuz-*)
KVER=${KERNEL#vmlinuz-}
[ -f "$R/boot/initrd.img-$KVER" ] || { log "no initramfs for kernel $KVER"; exit 1; }

# 3. The boot partition: FAT16 (hidden sectors = its start, which syslinux's boot sector adds
# to find ldlinux.sys), the kernel and initramfs, syslinux.cfg, syslinux installed by mtools.
BOOT=$WORK/boot.fat
mkfs.fat -F 16 -n EUCABOOT -h "$BOOT_START" -C "$BOOT" $((BOOT_SECTORS / 2)) >/dev/null
sed -e "s/@ROOT_UUID@/$ROOT_UUID/g" "$FILES/syslinux.cfg" > "$WORK/syslinux.cfg"
mcopy -i "$BOOT" "$WORK/syslinux.cfg" ::syslinux.cfg
mcopy -i "$BOOT" "$R/boot/$KERNEL" ::vmlinuz
mcopy -i "$BOOT" "$R/boot/initrd.img-$KVER" ::initrd.img
syslinux --install "$BOOT"

# 4. The disk: partition table (sfdisk on the file), syslinux's MBR boot code, the two
# filesystems at their offsets. The root filesystem is made from the tree at its offset.
DISK=$WORK/disk.raw
truncate -s "${DISK_MB}M" "$DISK"
sfdisk --quiet --no-reread --no-tell-kernel "$DISK" <<TABLE
label: dos
start=$BOOT_START, size=$BOOT_SECTORS, type=e, bootable
start=$ROOT_START, size=$ROOT_SECTORS, type=83
TABLE
dd if=/usr/lib/syslinux/mbr/mbr.bin of="$DISK" bs=440 count=1 conv=notrunc status=none
dd if="$BOOT" of="$DISK" bs=512 seek="$BOOT_START" conv=notrunc,sparse status=none
rm -f "$BOOT"
mke2fs -q -F -t ext4 -L euca-root -U "$ROOT_UUID" -d "$R" -E offset=$((ROOT_START * 512)) \
    "$DISK" $((ROOT_SECTORS / 2))k
qemu-img convert -c -f raw -O qcow2 "$DISK" "$WORK/out/$IMAGE"
rm -f "$DISK"

python3 - "$WORK/out" "$IMAGE" "$DIGEST" "$NAME" "$USER" "$SUITE" "$KVER" "$ROOT_UUID" "$DISK_MB" <<'PY'
import hashlib, json, os, sys
out, image, digest, name, user, suite, kver, root_uuid, disk_mb = sys.argv[1:]
path = os.path.join(out, image)
sha = hashlib.sha256()
with open(path, "rb") as handle:
    for block in iter(lambda: handle.read(1 << 20), b""):
        sha.update(block)
with open(os.path.join(out, "manifest.json"), "w") as handle:
    json.dump({"name": name, "file": image, "sha256": sha.hexdigest(), "size_bytes": os.path.getsize(path),
               "format": "qcow2", "virtual_size_bytes": int(disk_mb) << 20, "digest": digest,
               "default_user": user, "suite": suite, "kernel_version": kver, "root_uuid": root_uuid},
              handle, indent=2, sort_keys=True)
PY

rm -rf "$OUT.old"
[ -e "$OUT" ] && mv "$OUT" "$OUT.old"
mv "$WORK/out" "$OUT"
rm -rf "$OUT.old"
echo "built $OUT (kernel $KVER)"
