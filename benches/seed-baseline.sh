#!/bin/sh
# The pattern hostbridge replaces, as the seeds ran it: a systemd .path unit
# fires on the first write to the export dir, a oneshot sleeps 250 ms, then
# `mkdir -p`, copies, and reloads udev. Used by benches/pipeline.rs only.
#   $1 source dir   $2 destination dir   $3 udevadm stand-in
set -eu
src=$1 dest=$2 udevadm=$3
inotifywait -q -e close_write,moved_to "$src" >/dev/null
sleep 0.25
mkdir -p "$dest"
cp "$src"/*.rules "$dest"/
"$udevadm" control --reload
