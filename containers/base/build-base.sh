#!/usr/bin/env bash
# Build the local base image TAG from a debootstrap of Debian bookworm (as root):
#   containers/base/build-base.sh TAG WORKDIR
# WORKDIR keeps the root file system between calls (debootstrap takes minutes).
set -euo pipefail
TAG=${1:?usage: build-base.sh TAG WORKDIR}
WORK=${2:?usage: build-base.sh TAG WORKDIR}
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
MIRROR=${OPSHELF_DEBIAN_MIRROR:-http://deb.debian.org/debian}
mkdir -p "$WORK"
if [[ ! -f $WORK/rootfs.tar ]]; then
  rm -rf "$WORK/rootfs"
  debootstrap --variant=minbase --include=python3,python3-venv,ca-certificates \
    bookworm "$WORK/rootfs" "$MIRROR"
  rm -rf "$WORK/rootfs/var/cache/apt/archives/"*.deb "$WORK/rootfs/var/lib/apt/lists/"*
  tar -C "$WORK/rootfs" -cf "$WORK/rootfs.tar.partial" .
  mv "$WORK/rootfs.tar.partial" "$WORK/rootfs.tar"
fi
cp "$HERE/Containerfile" "$WORK/Containerfile"
buildah bud --isolation chroot -f "$WORK/Containerfile" -t "$TAG" "$WORK"
