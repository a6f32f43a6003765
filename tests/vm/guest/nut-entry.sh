#!/bin/sh
# Entry point of the VM tests' NUT image (Debian's nut-server and
# nut-client, tests/vm/build-image.sh), added to it at `podman import`. It
# does what the example quadlet's image does with the operator's files:
# /etc/nut/local/FILE over /etc/nut/FILE. Then the driver, as the image's
# own nut user (upsdrvctl starts usbhid-ups from ups.conf, which forks once
# it has the UPS and fails when it cannot open it), and upsd in the
# foreground.
set -e
for f in /etc/nut/local/*; do
    [ -f "$f" ] && cp "$f" /etc/nut/
done
mkdir -p /run/nut
chown nut:nut /run/nut
chmod 0770 /run/nut
echo "nut-entry: running as $(id nut)"
upsdrvctl -u nut start
exec upsd -F -u nut
