#!/bin/bash
# VM scenario 6 on the newest Debian suite (systemd >= 258, like Fedora
# CoreOS 43): a rule naming a group the host does not have is refused by
# hostbridge's preflight, and a rule `udevadm verify` finds fault with only
# for its style is installed in hostbridge's canonical form, which the same
# `udevadm verify` passes clean: udevd reads what the policy judged. Then the same
# rule is installed by hand, bypassing hostbridge, to show that udevd itself
# drops the whole line (its MODE is not applied either): the preflight
# guards against real behaviour.
#
# Scenario 7 (for the deployment examples): podman's own quadlet generator
# turns units/examples/*.container into services that systemd accepts, with
# the ordering on hostbridge.service, the export-dir volumes, the USB bus
# and the `hostbridge wait` the docs promise. (nut.sh starts
# nut-server.service for real, on Debian's NUT.)
set -u
. "$(dirname "$0")/lib.sh"

SRC=/run/containers/nut/udev-rules
BAD='SUBSYSTEM=="usb", ATTR{idVendor}=="0627", ATTR{idProduct}=="0001", MODE="0660", GROUP="nosuchgroup"'

scenario6() {
    echo "--- $(udevadm --version 2>&1 | head -1): systemd $(systemctl --version | head -1)"
    install_hostbridge
    # No allow_groups: the policy accepts any non-privileged group name, so
    # only the preflight (does the group exist here?) stands in the way.
    nut_udev_config "$SRC"
    mkdir -p "$SRC"
    local node orig why=""
    node=$(node_of 0627 0001) || { result 6 FAIL "no 0627:0001 device"; return; }
    orig=$(perms "$node")
    systemctl start hostbridge || why="hostbridge did not start"
    udevadm verify --help >/dev/null 2>&1 || why="${why:-udevadm verify is missing}"
    echo "$BAD" >"$SRC/63-unknown-group.rules"
    # Style only `udevadm verify` complains about (no space after a comma),
    # for a device that is not there: installed in canonical form.
    echo 'SUBSYSTEM=="usb",ATTR{idVendor}=="051d", ATTR{idProduct}=="0002", GROUP="dialout"' >"$SRC/64-style.rules"
    [ -z "$why" ] && ! wait_until 90 test -e /run/udev/rules.d/64-style.rules && why="64-style.rules not installed"
    # The status records the sync once its actions ran: the preflight's
    # finding only (verify ran on the canonical form and said nothing).
    [ -z "$why" ] && ! wait_until 60 is 1 status_jq '.bridges[0].last_sync.findings | length' \
        && why="findings: $(status_jq '.bridges[0].last_sync.findings')"
    local preflight raw canon
    preflight=$(status_jq '.bridges[0].last_sync.findings[] | select(.file=="63-unknown-group.rules" and .rule=="group-unknown") | "\(.file):\(.line):\(.column): \(.message)"' | head -1)
    raw=$(udevadm verify --resolve-names=early --no-summary "$SRC/64-style.rules" 2>&1 | head -1)
    canon=$(udevadm verify --resolve-names=early --no-summary /run/udev/rules.d/64-style.rules 2>&1 && echo clean)
    [ -z "$why" ] && [ -e /run/udev/rules.d/63-unknown-group.rules ] && why="63-unknown-group.rules was installed"
    [ -z "$why" ] && [ -z "$preflight" ] && why="no group-unknown finding: $(status_jq '.bridges[0].last_sync.findings')"
    [ -z "$why" ] && [ -z "$raw" ] && why="udevadm verify found nothing in the container's 64-style.rules"
    [ -z "$why" ] && [ "$canon" != clean ] && why="udevadm verify on the installed canonical form: $canon"
    [ -z "$why" ] && [ "$(perms "$node")" != "$orig" ] && why="node changed to $(perms "$node")"

    # Bypass hostbridge: what would udevd have done with the refused rule?
    echo "$BAD" >/run/udev/rules.d/63-bypass.rules
    udevadm control --reload && udevadm trigger --subsystem-match=usb --action=add && udevadm settle
    local after dropped
    after=$(perms "$node")
    dropped=$(journalctl -u systemd-udevd -o cat | grep -m1 -i 'nosuchgroup')
    rm -f /run/udev/rules.d/63-bypass.rules
    [ -z "$why" ] && [ "${after##* }" = 660 ] && why="udevd applied MODE 0660 despite the unknown group"
    [ -z "$why" ] && [ -z "$dropped" ] && why="udevd logged nothing about nosuchgroup"
    if [ -z "$why" ]; then
        result 6 PASS "preflight: $preflight | verify, container's file: $raw; installed canonical form: $canon | udevd, rule installed by hand: node stays $after; $dropped"
    else
        evidence
        result 6 FAIL "$why"
    fi
}

scenario7() {
    local q=/usr/libexec/podman/quadlet why="" out
    [ -x "$q" ] || { result 7 FAIL "no quadlet generator at $q"; return; }
    echo "--- $(podman --version)"
    mkdir -p /etc/containers/systemd
    install -m 0644 "$SHARE/nut-server.container" "$SHARE/fetchcert.container" /etc/containers/systemd/
    install -m 0644 "$SHARE/fetchcert.timer" /etc/systemd/system/
    # -dryrun prints the units it would write, and fails on what it rejects.
    out=$("$q" -dryrun 2>&1) || why="quadlet -dryrun failed: $out"
    systemctl daemon-reload
    local nut fetch
    nut=$(systemctl cat nut-server.service 2>&1)
    fetch=$(systemctl cat fetchcert.service 2>&1)
    [ -z "$why" ] && ! grep -qx 'Requires=hostbridge.service' <<<"$nut" && why="nut-server.service lacks Requires=hostbridge.service"
    [ -z "$why" ] && ! grep -qx 'After=hostbridge.service' <<<"$nut" && why="nut-server.service lacks After=hostbridge.service"
    [ -z "$why" ] && ! grep -q -- '-v /run/containers/nut/udev-rules:/export/udev-rules:z' <<<"$nut" && why="nut-server.service lacks the export volume: $nut"
    [ -z "$why" ] && ! grep -q -- '--device /dev/bus/usb' <<<"$nut" && why="nut-server.service lacks --device /dev/bus/usb"
    [ -z "$why" ] && ! grep -q -- '-v /run/containers/fetchcert/loki:/out:z' <<<"$fetch" && why="fetchcert.service lacks its volume: $fetch"
    # What systemd itself says of the generated units and the timer.
    local verify
    verify=$(systemd-analyze verify /run/systemd/generator/nut-server.service \
        /run/systemd/generator/fetchcert.service /etc/systemd/system/fetchcert.timer 2>&1)
    [ -z "$why" ] && [ -n "$verify" ] && why="systemd-analyze verify: $verify"
    [ -z "$why" ] && ! is fetchcert.service systemctl show -P Triggers fetchcert.timer && why="fetchcert.timer triggers $(systemctl show -P Triggers fetchcert.timer)"
    # It waits for hostbridge before the container starts (the NUT boot,
    # nut.sh, starts it for real on Debian's NUT).
    [ -z "$why" ] && ! grep -q 'hostbridge wait --bridge nut-udev --usb 051d:0002 --image ' <<<"$nut" \
        && why="nut-server.service does not wait for hostbridge: $nut"
    if [ -z "$why" ]; then
        result 7 PASS "quadlet made nut-server.service and fetchcert.service; systemd-analyze verify clean; nut-server.service waits for hostbridge (hostbridge wait) before its container"
    else
        echo "$out"
        result 7 FAIL "$why"
    fi
}

scenario6
scenario7
