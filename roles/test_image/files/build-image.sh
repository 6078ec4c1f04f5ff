#!/bin/sh
# Build the euca.cloud test image from Debian packages: the kernel package linux-image-amd64
# depends on (downloaded with apt-get download, unpacked, never installed), busybox-static and
# this role's files. Everything is built in a fresh directory next to OUT and renamed into
# place at the end, so an interrupted build never leaves an image that looks complete.
# Usage: build-image.sh OUT FILES KERNEL_PACKAGE ROOT_SIZE_MB IMAGE_NAME DIGEST
set -eu
OUT=$1 FILES=$2 KPKG=$3 ROOT_MB=$4 NAME=$5 DIGEST=$6
# Drivers the guest needs, with their dependencies resolved from the kernel's own modules.dep.
MODULES="virtio_pci virtio_net virtio_blk isofs vfat"

PARENT=$(dirname "$OUT")
mkdir -p "$PARENT"
WORK=$(mktemp -d "$PARENT/.test-image-build.XXXXXX")
trap 'rm -rf "$WORK"' EXIT
mkdir "$WORK/kpkg" "$WORK/out"

(cd "$WORK/kpkg" && apt-get download "$KPKG" >/dev/null)
dpkg-deb -x "$WORK"/kpkg/*.deb "$WORK/kpkg/root"
KVER=$(ls "$WORK/kpkg/root/lib/modules")
depmod -b "$WORK/kpkg/root" "$KVER"

R=$WORK/initramfs
mkdir -p "$R/bin" "$R/sbin" "$R/etc/udhcpc" "$R/proc" "$R/sys" "$R/dev" "$R/tmp" "$R/run" "$R/seed" \
         "$R/lib/modules" "$R/www/cgi-bin"
cp /bin/busybox "$R/bin/busybox"
: > "$R/etc/modules.order"
for module in $MODULES; do
    modprobe --dirname="$WORK/kpkg/root" --set-version="$KVER" --show-depends "$module" > "$WORK/deps"
    while read -r verb path _; do
        [ "$verb" = insmod ] || continue
        file=$(basename "$path")
        if ! grep -qx "$file" "$R/etc/modules.order"; then
            cp "$path" "$R/lib/modules/$file"
            echo "$file" >> "$R/etc/modules.order"
        fi
    done < "$WORK/deps"
    if ! grep -q . "$WORK/deps"; then
        echo "build-image: kernel module $module not found in $KPKG" >&2
        exit 1
    fi
done
cp "$FILES/init" "$R/init"
cp "$FILES/udhcpc.script" "$R/etc/udhcpc/default.script"
cp "$FILES"/www/cgi-bin/* "$R/www/cgi-bin/"
chmod 0755 "$R/init" "$R/etc/udhcpc/default.script" "$R"/www/cgi-bin/*
(cd "$R" && find . | LC_ALL=C sort | cpio -o -H newc --quiet | gzip -9n) > "$WORK/out/initramfs.img"
cp "$WORK/kpkg/root/boot/vmlinuz-$KVER" "$WORK/out/vmlinuz"

# The machine image (EMI): a small ext2 filesystem, made without mounting anything.
mkdir -p "$WORK/rootfs/etc"
printf '%s\n' "$NAME" > "$WORK/rootfs/etc/euca-image"
truncate -s "${ROOT_MB}M" "$WORK/out/root.img"
mke2fs -q -F -t ext2 -L euca-root -d "$WORK/rootfs" "$WORK/out/root.img" >/dev/null

python3 - "$WORK/out" "$DIGEST" "$KPKG" "$KVER" "$NAME" <<'PY'
import hashlib, json, os, sys
out, digest, kpkg, kver, name = sys.argv[1:]
files = {}
for role, filename in (("kernel", "vmlinuz"), ("ramdisk", "initramfs.img"), ("root", "root.img")):
    path = os.path.join(out, filename)
    sha = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            sha.update(block)
    files[role] = {"file": filename, "sha256": sha.hexdigest(), "size_bytes": os.path.getsize(path)}
with open(os.path.join(out, "manifest.json"), "w") as handle:
    json.dump({"name": name, "digest": digest, "kernel_package": kpkg, "kernel_version": kver, "files": files},
              handle, indent=2, sort_keys=True)
PY

rm -rf "$OUT.old"
[ -e "$OUT" ] && mv "$OUT" "$OUT.old"
mv "$WORK/out" "$OUT"
rm -rf "$OUT.old"
echo "built $OUT (kernel $KVER)"
