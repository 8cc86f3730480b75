#!/bin/bash
# Starts `snapvol serve` the way ../shared/peers/10-ours-nbd.sh expects a server: in the
# foreground, on the Unix socket given, exporting the origin (with one fresh 64 KiB-chunk
# snapshot taken just before) as the default export.
#   OURS_SERVER='Docs/bench/ours-nbd-server.sh {ORIGIN} {SOCK} {TMP}' ../shared/peers/10-ours-nbd.sh
# SNAPVOL (default: snapvol on PATH) and CHUNK (default 64K) can be set.
set -euo pipefail
origin=$1 sock=$2 tmp=$3
snapvol=${SNAPVOL:-snapvol}
pool=$tmp/pool
rm -rf "$pool" "$tmp/snap.cow"
mkdir -p "$tmp"
"$snapvol" pool init --pool "$pool" >/dev/null
"$snapvol" origin add disk --path "$origin" --pool "$pool" >/dev/null
size=$(stat -c %s "$origin")
"$snapvol" snapshot create snap --origin disk --cow "$tmp/snap.cow" --cow-size $((size + size / 16 + (1 << 20))) \
    --chunk-size "${CHUNK:-64K}" --pool "$pool" >/dev/null
exec "$snapvol" serve --pool "$pool" --socket "$sock" --default-export disk
