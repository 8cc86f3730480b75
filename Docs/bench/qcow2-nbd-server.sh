#!/bin/bash
# Starts qemu-nbd the way ../shared/peers/10-ours-nbd.sh expects a server, so qcow2 runs the
# same fio-over-NBD cases as snapvol, with the same client and transport: in the foreground,
# on the Unix socket given, serving a fresh qcow2 made from the origin.
#   OURS_NAME=qcow2-int64k OURS_SERVER='Docs/bench/qcow2-nbd-server.sh {ORIGIN} {SOCK} {TMP}' \
#       ../shared/peers/10-ours-nbd.sh
# QCOW2_MODE (default internal):
#   internal  the origin converted into a qcow2 (every cluster allocated), then an internal
#             snapshot taken (`qemu-img snapshot -c`): each first write copies a shared
#             cluster, as in the peers' W2 workload
#   overlay   a qcow2 overlay with the raw origin as its backing file, as in W4
# QCOW2_CLUSTER (default 64k), QCOW2_CACHE (default writeback, as the peers' QEMU_CACHE).
set -euo pipefail
origin=$1 sock=$2 tmp=$3
mode=${QCOW2_MODE:-internal} cluster=${QCOW2_CLUSTER:-64k}
image=$tmp/image.qcow2
mkdir -p "$tmp"
rm -f "$image"
case $mode in
internal)
    qemu-img convert -q -f raw -O qcow2 -o "cluster_size=$cluster" "$origin" "$image"
    qemu-img snapshot -c snap1 "$image" ;;
overlay)
    qemu-img create -q -f qcow2 -o "cluster_size=$cluster" -b "$origin" -F raw "$image" ;;
*)
    echo "qcow2-nbd-server.sh: unknown QCOW2_MODE '$mode' (internal or overlay)" >&2
    exit 2 ;;
esac
sync
exec qemu-nbd -t -k "$sock" --cache="${QCOW2_CACHE:-writeback}" -f qcow2 "$image"
