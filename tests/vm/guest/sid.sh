#!/bin/bash
# VM scenario 6 on the newest Debian suite (systemd >= 258, like Fedora
# CoreOS 43): `udevadm verify` runs on candidates, and a rule naming a group
# the host does not have is refused by hostbridge's preflight. Then the same
# rule is installed by hand, bypassing hostbridge, to show that udevd itself
# drops the whole line (its MODE is not applied either): the preflight
# guards against real behaviour.
set -u
. "$(dirname "$0")/lib.sh"

SRC=/run/containers/nut/udev-rules
BAD='SUBSYSTEM=="usb", ATTR{idVendor}=="0627", ATTR{idProduct}=="0001", MODE="0660", GROUP="nosuchgroup"'

scenario6() {
    echo "--- $(udevadm --version 2>&1 | head -1): systemd $(systemctl --version | head -1)"
    install_hostbridge
    # No allow_groups: the policy accepts any non-privileged group name, so
    # only the preflight (does the group exist here?) stands in the way.
    cat >/etc/hostbridge/config.yaml <<YAML
bridges:
  - name: nut-udev
    kind: udev-rules
    source: $SRC
    include: ["*.rules"]
    install_to: /run/udev/rules.d
    then:
      - udev-reload
      - udev-trigger: { subsystem: usb, action: add }
YAML
    mkdir -p "$SRC"
    local node orig why=""
    node=$(node_of 0627 0001) || { result 6 FAIL "no 0627:0001 device"; return; }
    orig=$(perms "$node")
    systemctl start hostbridge || why="hostbridge did not start"
    udevadm verify --help >/dev/null 2>&1 || why="${why:-udevadm verify is missing}"
    echo "$BAD" >"$SRC/63-unknown-group.rules"
    # Style only `udevadm verify` complains about (no space after a comma),
    # for a device that is not there: installed, with a warning.
    echo 'SUBSYSTEM=="usb",ATTR{idVendor}=="051d", ATTR{idProduct}=="0002", GROUP="dialout"' >"$SRC/64-style.rules"
    [ -z "$why" ] && ! wait_until 90 test -e /run/udev/rules.d/64-style.rules && why="64-style.rules not installed"
    # The status records the sync once its actions ran.
    [ -z "$why" ] && ! wait_until 60 is 2 status_jq '.bridges[0].last_sync.findings | length' \
        && why="findings: $(status_jq '.bridges[0].last_sync.findings')"
    local preflight verify
    preflight=$(status_jq '.bridges[0].last_sync.findings[] | select(.file=="63-unknown-group.rules" and .rule=="group-unknown") | "\(.file):\(.line):\(.column): \(.message)"' | head -1)
    verify=$(status_jq '.bridges[0].last_sync.findings[] | select(.rule=="udevadm-verify") | "\(.file):\(.line): \(.message)"' | head -1)
    [ -z "$why" ] && [ -e /run/udev/rules.d/63-unknown-group.rules ] && why="63-unknown-group.rules was installed"
    [ -z "$why" ] && [ -z "$preflight" ] && why="no group-unknown finding: $(status_jq '.bridges[0].last_sync.findings')"
    [ -z "$why" ] && [ -z "$verify" ] && why="no udevadm-verify finding: $(status_jq '.bridges[0].last_sync.findings')"
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
        result 6 PASS "preflight: $preflight | verify: $verify | udevd, rule installed by hand: node stays $after; $dropped"
    else
        evidence
        result 6 FAIL "$why"
    fi
}

scenario6
