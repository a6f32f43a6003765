#!/usr/bin/env bash
# The benchmark's second baseline: `inotifywait -m` on SRC, and once no
# event came for 300 ms, `cp -a SRC/. DEST` (the shape of a hand-written
# settle loop). Usage: inotify-loop.sh SRC DEST
set -u
src=$1 dest=$2
inotifywait -m -q -e close_write,moved_to,create,delete --format '%f' "$src" |
    while true; do
        # Wait for the first event, then for 300 ms of quiet.
        read -r _ || exit 0
        while read -r -t 0.3 _; do :; done
        cp -a "$src/." "$dest"
    done
