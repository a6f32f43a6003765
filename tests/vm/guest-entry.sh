#!/bin/bash
# Baked into the VM image (tests/vm/build-image.sh); runs as a oneshot unit in
# multi-user.target with output on ttyS0. Mounts the host's 9p share "hostshare"
# on /mnt/host, runs the script named by `hb.test=` on the kernel command line
# (a path under /mnt/host), prints "HB-EXIT rc=N", and powers off at once.
exec </dev/null 2>&1
echo "HB-BOOTED uptime=$(cut -d' ' -f1 /proc/uptime)s kernel=$(uname -r)"
mkdir -p /mnt/host
modprobe 9pnet_virtio 2>/dev/null
if ! mount -t 9p -o trans=virtio,version=9p2000.L,msize=262144 hostshare /mnt/host; then
    echo "HB-EXIT rc=97 (9p mount failed)"
    echo o >/proc/sysrq-trigger
fi
test=""
for a in $(cat /proc/cmdline); do case $a in hb.test=*) test=${a#hb.test=} ;; esac; done
if [ -z "$test" ] || [ ! -x "/mnt/host/$test" ]; then
    echo "HB-EXIT rc=98 (no test script: hb.test=$test)"
else
    "/mnt/host/$test"
    echo "HB-EXIT rc=$? uptime=$(cut -d' ' -f1 /proc/uptime)s"
fi
sync
echo o >/proc/sysrq-trigger
sleep 10
