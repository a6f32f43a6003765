#!/bin/bash
# VM scenarios 1-5 (docs/testing.md) on Debian 12 with a real systemd-udevd
# and QEMU's usb-tablet (0627:0001), one boot, in order; each prints
# "HB-SCENARIO N PASS|FAIL detail". Scenario 4 asks the host to plug in a
# second device by printing "HB-HOTPLUG <qemu device_add arguments>".
set -u
. "$(dirname "$0")/lib.sh"

SRC=/run/containers/nut/udev-rules
RULE='SUBSYSTEM=="usb", ATTR{idVendor}=="0627", ATTR{idProduct}=="0001", MODE="0660", GROUP="nut"'

setup() {
    groupadd -r nut && useradd -r -g nut -M -s /usr/sbin/nologin nut
    install_hostbridge
    cat >/etc/hostbridge/config.yaml <<YAML
bridges:
  - name: nut-udev
    kind: udev-rules
    source: $SRC
    include: ["*.rules"]
    install_to: /run/udev/rules.d
    prune: true
    allow_groups: [nut]
    then:
      - udev-reload
      - udev-trigger: { subsystem: usb, action: add }
      - usb-check: { user: nut, expect: ["0627:0001"] }
YAML
    mkdir -p "$SRC"
    NODE=$(node_of 0627 0001) || { echo "no 0627:0001 device"; lsusb; return 1; }
    ORIG=$(perms "$NODE")
    RULES_DIR_AT_BOOT=$([ -e /run/udev/rules.d ] && echo present || echo absent)
    echo "--- node $NODE at boot: $ORIG; /run/udev/rules.d $RULES_DIR_AT_BOOT"
    systemctl start hostbridge || { systemctl status hostbridge --no-pager; return 1; }
}

# 1. The container writes its rules slowly; hostbridge settles, creates the
# rules dir, installs, reloads, triggers; the node gets the rule's group and
# mode, and usb-check, status and systemctl say so.
scenario1() {
    {
        echo "# NUT-style rule for the QEMU tablet, written in chunks"
        sleep 0.3
        printf '%s' "${RULE%%MODE=*}"
        sleep 0.3
        echo "MODE=${RULE#*MODE=}"
    } >"$SRC/62-nut-usbups.rules"
    local why=""
    wait_until 90 is "root:nut 660" perms "$NODE" || why="node is $(perms "$NODE")"
    [ -z "$why" ] && [ "$RULES_DIR_AT_BOOT" = absent ] && [ -d /run/udev/rules.d ] || why="${why:-rules dir was $RULES_DIR_AT_BOOT at boot}"
    [ -z "$why" ] && ! wait_until 30 is true status_jq '.bridges[0].usb.ok' && why="usb.ok is $(status_jq '.bridges[0].usb.ok')"
    [ -z "$why" ] && ! is ok status_jq '.bridges[0].usb.devices[0].verdict' && why="verdict $(status_jq '.bridges[0].usb.devices[0]')"
    [ -z "$why" ] && ! "$HB" status >/dev/null && why="hostbridge status exit $?"
    [ -z "$why" ] && ! systemctl status hostbridge --no-pager | grep -q 'Status: "1 bridge ok' && why="no STATUS= line in systemctl status"
    local syncs
    syncs=$(journalctl -u hostbridge -o cat | grep -c 'changed: installed 62-nut-usbups.rules')
    [ -z "$why" ] && [ "$syncs" != 1 ] && why="$syncs syncs for one write"
    # Under journald the log lines carry fields (docs/operations.md).
    [ -z "$why" ] && ! journalctl -u hostbridge BRIDGE=nut-udev RESULT=ok -o cat | grep -q 'changed: installed 62-nut-usbups.rules' \
        && why="no journal entry with BRIDGE=nut-udev RESULT=ok: $(journalctl -u hostbridge -o verbose -n 3 --no-pager)"
    if [ -z "$why" ]; then
        result 1 PASS "$NODE $ORIG -> $(perms "$NODE"); $(systemctl status hostbridge --no-pager | grep -o 'Status: .*')"
    else
        evidence
        result 1 FAIL "$why"
    fi
}

# 2. A rules file that would run a program beside a good one: the good one
# applies, the bad one is not installed and never runs.
scenario2() {
    echo 'SUBSYSTEM=="usb", ATTR{idVendor}=="0627", RUN+="/usr/bin/touch /run/hb-pwned"' >"$SRC/63-evil.rules"
    echo 'SUBSYSTEM=="usb", ATTR{idVendor}=="0627", ATTR{idProduct}=="0001", OWNER="nut"' >"$SRC/64-owner.rules"
    local why=""
    wait_until 90 is "nut:nut 660" perms "$NODE" || why="node is $(perms "$NODE")"
    # Give udev every chance to run it: another trigger.
    udevadm trigger --subsystem-match=usb --action=change && udevadm settle
    [ -z "$why" ] && [ -e /run/udev/rules.d/63-evil.rules ] && why="63-evil.rules was installed"
    [ -z "$why" ] && [ -e /run/hb-pwned ] && why="the RUN+= marker exists"
    local finding
    finding=$(status_jq '.bridges[0].last_sync.findings[] | select(.file=="63-evil.rules") | "\(.file):\(.line):\(.column): \(.rule)"' | head -1)
    [ -z "$why" ] && [ -z "$finding" ] && why="no finding for 63-evil.rules in status"
    [ -z "$why" ] && ! "$HB" status | grep -q '63-evil.rules' && why="hostbridge status does not name 63-evil.rules"
    [ -z "$why" ] && ! journalctl -u hostbridge RULE=run FILE=63-evil.rules -o cat | grep -q '63-evil.rules' \
        && why="no journal entry with RULE=run FILE=63-evil.rules"
    if [ -z "$why" ]; then
        result 2 PASS "good applied ($(perms "$NODE")), evil refused: $finding"
    else
        evidence
        result 2 FAIL "$why"
    fi
    rm -f "$SRC/63-evil.rules"
}

# 3. The rules are removed: pruned, reloaded, and the node goes back to what
# it was before the grant; status says what was revoked.
scenario3() {
    rm -f "$SRC/62-nut-usbups.rules" "$SRC/64-owner.rules"
    local why=""
    wait_until 90 is "$ORIG" perms "$NODE" || why="node is $(perms "$NODE"), was $ORIG"
    local note
    note=$(status_jq '.bridges[0].last_sync.notes[]' | grep revoked | head -1)
    [ -z "$why" ] && [ -z "$note" ] && why="no revocation note in status"
    [ -z "$why" ] && [ -n "$(ls /run/udev/rules.d)" ] && why="left in /run/udev/rules.d: $(ls /run/udev/rules.d)"
    if [ -z "$why" ]; then
        result 3 PASS "$note"
    else
        evidence
        result 3 FAIL "$why"
    fi
}

# 4. A second device is plugged in: the udev monitor sees it and its verdict
# appears in status with no file change.
scenario4() {
    echo "$RULE" >"$SRC/62-nut-usbups.rules"
    local why=""
    wait_until 90 is "root:nut 660" perms "$NODE" || why="rule not applied again: $(perms "$NODE")"
    wait_until 30 is on status_jq '.daemon.hotplug' || why="${why:-hotplug is $(status_jq '.daemon.hotplug')}"
    echo "HB-HOTPLUG device_add usb-kbd,bus=xhci.0,id=hotplugged"
    [ -z "$why" ] && ! wait_until 120 is 2 status_jq '[.bridges[0].usb.devices[] | select(.verdict=="ok")] | length' \
        && why="status lists $(status_jq '.bridges[0].usb')"
    local trigger added
    trigger=$(status_jq '.bridges[0].usb.trigger')
    [ -z "$why" ] && [ "${trigger#hotplug }" = "$trigger" ] && why="usb trigger is $trigger"
    added=$(journalctl -u hostbridge -o cat | grep -m1 'USB add 001:003: 0627:0001 ok')
    [ -z "$why" ] && [ -z "$added" ] && why="no 'USB add 001:003' line in the journal"
    # The syncs' own triggers (action add, and the revocation's) are echoes,
    # not plug-ins: never re-checked as such.
    [ -z "$why" ] && journalctl -u hostbridge -o cat | grep -q 'USB add 001:002' \
        && why="a trigger's echo was taken for a plug-in: $(journalctl -u hostbridge -o cat | grep 'USB add 001:002')"
    # The rule goes: the device plugged in after the grant has no earlier
    # state recorded, and comes back as a fresh plug-in would (root:root,
    # udev's default mode); the first one to what it was.
    local later=/dev/bus/usb/001/003 revoked="" summary
    summary=$(status_jq '.bridges[0].usb.summary')
    if [ -z "$why" ]; then
        rm -f "$SRC/62-nut-usbups.rules"
        wait_until 90 is "root:root 664" perms "$later" || why="$later after the rule went: $(perms "$later")"
        [ -z "$why" ] && ! wait_until 30 is "$ORIG" perms "$NODE" && why="$NODE after the rule went: $(perms "$NODE"), was $ORIG"
        revoked=$(journalctl -u hostbridge -o cat | grep -m1 'plugged in after the grant')
        [ -z "$why" ] && [ -z "$revoked" ] && why="no 'plugged in after the grant' revocation in the journal"
    fi
    if [ -z "$why" ]; then
        result 4 PASS "$added; status: $trigger: $summary; then ${revoked#nut-udev: }"
    else
        evidence
        result 4 FAIL "$why"
    fi
}

# 5. The config changes and `systemctl reload` applies it; a broken one
# keeps the old config running and status says why.
scenario5() {
    cat >>/etc/hostbridge/config.yaml <<'YAML'
  - name: certs
    kind: files
    source: /run/containers/fetchcert
    install_to: /run/hb-certs
YAML
    local why=""
    systemctl reload hostbridge || why="systemctl reload failed"
    [ -z "$why" ] && ! wait_until 30 is 2 status_jq '.bridges | length' && why="bridges: $(status_jq '[.bridges[].name]')"
    echo "bogus_key: 1" >>/etc/hostbridge/config.yaml
    systemctl reload hostbridge
    [ -z "$why" ] && ! wait_until 30 is true status_jq '.daemon.reload_error != null' && why="no reload_error"
    local err
    err=$(status_jq '.daemon.reload_error')
    [ -z "$why" ] && ! is active systemctl is-active hostbridge && why="not active after a bad reload"
    [ -z "$why" ] && ! is 2 status_jq '.bridges | length' && why="bridges changed by a bad config"
    [ -z "$why" ] && [ "${err#*unknown field}" = "$err" ] && why="reload_error: $err"
    if [ -z "$why" ]; then
        result 5 PASS "reloaded to 2 bridges; bad config kept the old one: $err"
    else
        evidence
        result 5 FAIL "$why"
    fi
}

if ! setup; then
    evidence
    for n in 1 2 3 4 5; do result "$n" FAIL "setup failed"; done
    exit 1
fi
scenario1
scenario2
scenario3
scenario4
scenario5
