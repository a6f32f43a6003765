#!/bin/bash
# VM scenarios for NUT for real (issue 19), on the newest Debian suite: a
# real NUT driver (Debian's usbhid-ups, in a container made from Debian's
# nut-server package) opens an emulated APC Back-UPS (hb-ups, attached
# through the guest kernel's vhci-hcd) through the access hostbridge set up
# with the real udevd, started by the project's own quadlet example.
#
#   nut6  readiness: a refused rules line keeps `hostbridge wait` (the
#         quadlet's ExecStartPre=) failing, so the NUT container never runs.
#   nut1  first boot order: the quadlet copies NUT's rules out of the image,
#         waits for hostbridge, and the driver, as the image's own nut user,
#         claims the UPS: upsc says OL, then OB and OB LB as the emulated UPS
#         goes on battery and runs low.
#   nut2  the host's nut group gets another gid than the image's nut: the
#         host-side usb-check still says ok (the host's nut user is in it),
#         but `hostbridge wait --image` (the quadlet's ExecStartPre=) sees the
#         node as the container's nut will, refuses to let NUT start, and
#         names the gid the rule must grant; with the gid set back, NUT
#         starts and reads the UPS again.
#   nut3  replug: the emulated UPS is detached (the driver's data goes
#         stale) and attached again at a new device number: udev gives the
#         new node the rule's group and mode and hostbridge's hotplug
#         re-check says ok for it. The driver in the running container does
#         not find it again by itself; the bridge's `on_replug` restarts
#         nut-server.service (its `hostbridge wait` passes at once) and upsc
#         says OL again, with no hand on the host.
set -u
. "$(dirname "$0")/lib.sh"

SRC=/run/containers/nut/udev-rules
UPS_SOCK=/run/hb-ups.sock
TAR=/var/lib/hb/nut-image.tar

# from_image FILE: a file of the NUT image.
from_image() {
    tar -xOf "$TAR" "./$1"
}

# import_nut_image: the NUT image under the name the quadlet example uses
# (the guest has no network), with nut-entry.sh as its entry point.
import_nut_image() {
    local image add=/tmp/nut-add
    image=$(sed -n 's/^Image=//p' "$SHARE/nut-server.container")
    rm -rf "$add" && mkdir -p "$add/usr/local/sbin"
    install -m 0755 "$SHARE/nut-entry.sh" "$add/usr/local/sbin/nut-entry"
    # Appended in place: the guest's disk is a throwaway snapshot.
    tar -C "$add" -rf "$TAR" ./usr/local/sbin/nut-entry
    podman import --change 'ENTRYPOINT ["/usr/local/sbin/nut-entry"]' "$TAR" "$image" >/dev/null
}

# upsc_status: ups.status as the container's own upsc reads it from upsd.
upsc_status() {
    podman exec nut-server upsc ups@localhost ups.status 2>/dev/null
}

setup() {
    podman_for_this_guest
    modprobe vhci-hcd || { echo "no vhci-hcd"; return 1; }
    # The host's nut group and user with the image's ids (the aligned case;
    # a host whose ids differ is scenario nut2).
    local uid gid
    uid=$(from_image etc/passwd | awk -F: '$1=="nut"{print $3}')
    gid=$(from_image etc/group | awk -F: '$1=="nut"{print $3}')
    [ -n "$uid" ] && [ -n "$gid" ] || { echo "no nut user in the image"; return 1; }
    echo "--- the image's nut user: uid $uid gid $gid; $(from_image var/lib/dpkg/status | grep -A8 '^Package: nut-server$' | grep '^Version')"
    groupadd -g "$gid" nut && useradd -r -u "$uid" -g nut -M -s /usr/sbin/nologin nut
    install_hostbridge
    nut_udev_config "$SRC" 'usb-check: { user: nut, expect: ["051d:0002"], on_replug: [ restart-unit: nut-server.service ] }'
    mkdir -p "$SRC"
    systemctl start hostbridge || { echo "hostbridge did not start"; return 1; }
    "$SHARE/hb-ups" serve "$UPS_SOCK" online >/tmp/hb-ups.log 2>&1 &
    wait_until 60 node_of 051d 0002 || { echo "the emulated UPS did not appear: $(cat /tmp/hb-ups.log; dmesg | tail -20)"; return 1; }
    echo "--- UPS at $(node_of 051d 0002): $(perms "$(node_of 051d 0002)"); $(lsusb -d 051d:0002)"
    echo "--- /run/udev: $(ls -l /run/udev | tr '\n' ' ')"
    echo "--- hostbridge: hotplug $(status_jq .daemon.hotplug)"
    import_nut_image || { echo "podman import failed"; return 1; }
    mkdir -p /etc/nut-local /etc/containers/systemd
    cat >/etc/nut-local/ups.conf <<'CONF'
pollinterval = 1
[ups]
    driver = usbhid-ups
    port = auto
    vendorid = 051d
    productid = 0002
CONF
    printf '[monitor]\n    password = vm-test\n    upsmon primary\n' >/etc/nut-local/upsd.users
    echo "# VM test: upsmon is not run" >/etc/nut-local/upsmon.conf
    install -m 0644 "$SHARE/nut-server.container" /etc/containers/systemd/
    systemctl daemon-reload
}

nut6() {
    local why="" said
    rm -f "$SRC"/*
    echo 'SUBSYSTEM=="usb", ATTR{idVendor}=="051d", RUN+="/bin/touch /run/pwned"' >"$SRC/63-evil.rules"
    if timeout 300 systemctl start nut-server.service; then
        why="nut-server.service started with a refused rules file"
    fi
    said=$(journalctl -u nut-server --no-pager -o cat | grep -m1 'hostbridge wait: nut-udev: ')
    [ -z "$why" ] && ! grep -q '63-evil.rules:1:' <<<"$said" && why="wait did not name the refused line: $said"
    [ -z "$why" ] && podman container exists nut-server && [ "$(podman inspect -f '{{.State.Running}}' nut-server)" = true ] \
        && why="the NUT container runs"
    [ -z "$why" ] && [ -e /run/pwned ] && why="the refused RUN ran"
    [ -z "$why" ] && [ -e /run/udev/rules.d/63-evil.rules ] && why="63-evil.rules was installed"
    # Restart=on-failure would try again: stop that before the file goes.
    systemctl stop nut-server.service
    systemctl reset-failed nut-server.service 2>/dev/null
    rm -f "$SRC/63-evil.rules"
    if [ -z "$why" ]; then
        result nut6 PASS "nut-server.service did not start: $said"
    else
        evidence
        result nut6 FAIL "$why"
    fi
}

nut1() {
    local why="" node before after seen="" s
    node=$(node_of 051d 0002)
    before=$(perms "$node")
    if ! timeout 300 systemctl start nut-server.service; then
        why="nut-server.service did not start"
    fi
    local ready
    ready=$(journalctl -u nut-server --no-pager -o cat | grep -m1 'nut-udev: ready: ')
    [ -z "$why" ] && [ -z "$ready" ] && why="no ready line from hostbridge wait"
    [ -z "$why" ] && ! wait_until 60 is OL upsc_status && why="upsc says '$(upsc_status)', not OL"
    # The operator's files are mounted read-only, one per mount.
    local mounts f
    mounts=$(podman inspect nut-server --format '{{range .Mounts}}{{.Destination}}:{{.RW}} {{end}}')
    for f in ups.conf upsd.users upsmon.conf; do
        [ -z "$why" ] && ! grep -q "/etc/nut/local/$f:false" <<<"$mounts" && why="no read-only /etc/nut/local/$f: $mounts"
    done
    after=$(perms "$(node_of 051d 0002)")
    for s in "battery:OB" "low:OB LB" "online:OL"; do
        [ -n "$why" ] && break
        "$SHARE/hb-ups" ctl "$UPS_SOCK" "${s%%:*}" >/dev/null || { why="hb-ups ctl ${s%%:*} failed"; break; }
        wait_until 60 is "${s#*:}" upsc_status || why="after '${s%%:*}' upsc says '$(upsc_status)', not '${s#*:}'"
        seen="$seen -> ${s#*:}"
    done
    if [ -z "$why" ]; then
        result nut1 PASS "node $before -> $after; ExecStartPre: $ready; upsc: OL$seen; driver: $(podman exec nut-server upsc ups@localhost driver.name 2>/dev/null) $(podman exec nut-server upsc ups@localhost ups.model 2>/dev/null)"
    else
        evidence
        journalctl -u nut-server --no-pager -n 40 -o cat
        podman logs nut-server 2>&1 | tail -20
        cat /tmp/hb-ups.log
        result nut1 FAIL "$why"
    fi
}

nut2() {
    local why="" gid other node said host_check
    gid=$(getent group nut | cut -d: -f3)
    for other in $(seq 990 -1 900); do getent group "$other" >/dev/null || break; done
    node=$(node_of 051d 0002)
    systemctl stop nut-server.service
    # Another gid for the host's nut group (its members follow), and the
    # node re-made by udev with it.
    groupmod -g "$other" nut
    # udevd resolves GROUP= names when it loads the rules, and a reload
    # skips rules files that did not change: restart it.
    systemctl restart systemd-udevd
    udevadm trigger --subsystem-match=usb --action=add && udevadm settle
    [ "$(stat -c %g "$node")" = "$other" ] || why="the node has gid $(stat -c %g "$node"), not $other"
    if [ -z "$why" ] && timeout 300 systemctl start nut-server.service; then
        why="nut-server.service started although its nut (gid $gid) cannot open $node"
    fi
    said=$(journalctl -u nut-server --no-pager -o cat | grep 'hostbridge wait: nut-udev: 051d:0002' | tail -1)
    host_check=$("$HB" usb --expect 051d:0002 2>&1 | grep 051d:0002)
    [ -z "$why" ] && ! grep -q "groupmod -g $gid nut" <<<"$said" && why="wait did not name gid $gid: $said"
    [ -z "$why" ] && ! grep -q ' ok$' <<<"$host_check" && why="the host-side check is not ok: $host_check"
    systemctl stop nut-server.service
    systemctl reset-failed nut-server.service 2>/dev/null
    # Back to the image's gid: NUT starts and reads the UPS.
    groupmod -g "$gid" nut
    systemctl restart systemd-udevd
    udevadm trigger --subsystem-match=usb --action=add && udevadm settle
    if [ -z "$why" ]; then
        timeout 300 systemctl start nut-server.service || why="nut-server.service did not start with gid $gid back"
    fi
    [ -z "$why" ] && ! wait_until 60 is OL upsc_status && why="upsc says '$(upsc_status)' with gid $gid back"
    if [ -z "$why" ]; then
        result nut2 PASS "host check: $host_check | ExecStartPre: $said | gid $gid back: upsc OL"
    else
        evidence
        journalctl -u nut-server --no-pager -n 30 -o cat
        result nut2 FAIL "$why"
    fi
}

# stale: upsc gets no status (the driver lost the UPS).
stale() {
    ! podman exec nut-server upsc ups@localhost ups.status
}

# replugged OLD: the UPS is there again, at another node than OLD.
replugged() {
    local n
    n=$(node_of 051d 0002) && [ "$n" != "$1" ]
}

nut3() {
    local why="" old new said
    # NUT runs (an earlier scenario's failure may have left it stopped).
    timeout 300 systemctl start nut-server.service || why="nut-server.service did not start"
    [ -z "$why" ] && ! wait_until 60 is OL upsc_status && why="upsc says '$(upsc_status)' before the replug"
    old=$(node_of 051d 0002)
    "$SHARE/hb-ups" ctl "$UPS_SOCK" detach >/dev/null || why="${why:-detach failed}"
    [ -z "$why" ] && ! wait_until 30 stale && why="upsc still answers after the UPS was unplugged: $(upsc_status)"
    "$SHARE/hb-ups" ctl "$UPS_SOCK" attach >/dev/null || why="${why:-attach failed}"
    [ -z "$why" ] && ! wait_until 60 replugged "$old" && why="no new node after the replug (was $old)"
    new=$(node_of 051d 0002)
    local bus_dev
    bus_dev=$(printf '%s:%s' "$(basename "$(dirname "$new")")" "$(basename "$new")")
    [ -z "$why" ] && ! wait_until 30 is "root:nut 664" perms "$new" && why="$new is $(perms "$new")"
    [ -z "$why" ] && ! wait_until 30 is ok status_jq ".bridges[0].usb.devices[] | select(.bus_dev==\"$bus_dev\") | .verdict" \
        && why="no hotplug re-check of $bus_dev: $(status_jq '.bridges[0].usb')"
    said=$(journalctl -u hostbridge --no-pager -o cat | grep "USB add $bus_dev" | tail -1)
    # NUT's usbhid-ups in the container does not find the UPS again by
    # itself (its /dev was made at start); the bridge's on_replug restarts
    # the unit, whose `hostbridge wait` passes at once.
    local ran="$bus_dev re-enumerated: running on_replug (restart-unit)"
    [ -z "$why" ] && ! wait_until 60 logged "$ran" && why="hostbridge did not say '$ran'"
    [ -z "$why" ] && ! wait_until 300 logged "nut-udev: on_replug restart-unit ok" \
        && why="the restart did not finish well: $(status_jq '.bridges[0].replug')"
    [ -z "$why" ] && ! wait_until 60 is OL upsc_status && why="upsc says '$(upsc_status)' after hostbridge restarted NUT"
    [ -z "$why" ] && ! is true status_jq '.bridges[0].replug.ok' && why="status: $(status_jq '.bridges[0].replug')"
    if [ -z "$why" ]; then
        result nut3 PASS "$old unplugged, upsc stale; replugged as $new ($(perms "$new")); hostbridge: $said; then $(journalctl -u hostbridge --no-pager -o cat | grep -m1 "running on_replug"); upsc OL again"
    else
        evidence
        journalctl -u nut-server --no-pager -n 30 -o cat
        cat /tmp/hb-ups.log
        result nut3 FAIL "$why"
    fi
}

# driver_status: ups.status from the hand-started driver's container.
driver_status() {
    podman exec nut-driver upsc ups@localhost ups.status 2>/dev/null
}

# driver_stale: upsc gets no status from the hand-started driver's upsd.
driver_stale() {
    ! podman exec nut-driver upsc ups@localhost ups.status
}

# logged TEXT: hostbridge's journal has TEXT.
logged() {
    journalctl -u hostbridge --no-pager -o cat | grep -q -- "$1"
}

nut4() {
    local why="" node note
    node=$(node_of 051d 0002)
    systemctl stop nut-server.service   # its ExecStartPre= would export the rules again
    # NUT's driver, started by hand in a container that keeps running.
    podman run -d --rm --name nut-driver --network=none -v /dev/bus/usb:/dev/bus/usb \
        --device-cgroup-rule='c 189:* rwm' -v /etc/nut-local:/etc/nut/local:ro \
        "$(sed -n 's/^Image=//p' "$SHARE/nut-server.container")" >/dev/null || why="podman run failed"
    [ -z "$why" ] && ! wait_until 60 is OL driver_status && why="the driver did not start: $(podman logs nut-driver 2>&1 | tail -5)"
    rm -f "$SRC/62-nut-usbups.rules"
    [ -z "$why" ] && ! wait_until 60 is "root:root 664" perms "$node" && why="$node is $(perms "$node") after the revocation"
    [ -z "$why" ] && ! wait_until 60 logged "revoked 051d:0002" && why="nothing revoked: $(status_jq '.bridges[0].last_sync')"
    note=$(status_jq '.bridges[0].last_sync.notes[]' | grep -m1 'revoked 051d:0002')
    [ -z "$why" ] && ! is OL driver_status && why="the open handle was lost at once: $(driver_status)"
    "$SHARE/hb-ups" ctl "$UPS_SOCK" detach >/dev/null && "$SHARE/hb-ups" ctl "$UPS_SOCK" attach >/dev/null \
        || why="${why:-replug failed}"
    [ -z "$why" ] && ! wait_until 60 replugged "$node" && why="no new node after the replug"
    # The driver must open the new node to go on: it cannot, so its data
    # goes stale; and the kernel refuses the container's nut the node.
    local new denied
    new=$(node_of 051d 0002)
    [ -z "$why" ] && ! wait_until 60 driver_stale && why="upsc still answers: $(driver_status)"
    denied=$(podman exec --user nut nut-driver sh -c ": <> $new" 2>&1)
    [ -z "$why" ] && ! grep -q 'Permission denied' <<<"$denied" && why="nut in the container opens $new: $denied"
    podman rm -f nut-driver >/dev/null 2>&1
    if [ -z "$why" ]; then
        result nut4 PASS "status: $note | after a replug, $new is $(perms "$new"): upsc stale, and nut in the container: $denied"
    else
        evidence
        result nut4 FAIL "$why"
    fi
}

nut5() {
    local why="" node note rules=/usr/share/hb-nut-62.rules
    node=$(node_of 051d 0002)
    systemctl stop hostbridge
    rm -rf /run/hostbridge
    # The old glue: NUT's rules copied by hand, udev triggered, then the copy
    # removed; the node keeps the grant.
    from_image usr/lib/udev/rules.d/62-nut-usbups.rules >"$rules"
    cp "$rules" /run/udev/rules.d/62-nut-usbups.rules
    udevadm control --reload && udevadm trigger --subsystem-match=usb --action=add && udevadm settle
    rm /run/udev/rules.d/62-nut-usbups.rules
    udevadm control --reload
    [ "$(perms "$node")" = "root:nut 664" ] || why="the glue's grant did not apply: $(perms "$node")"
    chmod 0660 "$node"   # as the old glue's own rule had it
    systemctl start hostbridge || why="${why:-hostbridge did not start}"
    cp "$rules" "$SRC/62-nut-usbups.rules"
    [ -z "$why" ] && ! wait_until 60 test -e /run/udev/rules.d/62-nut-usbups.rules && why="not installed"
    [ -z "$why" ] && ! wait_until 60 grep -q inherited /run/hostbridge/usb-grants.json \
        && why="no inherited grant recorded: $(cat /run/hostbridge/usb-grants.json 2>&1)"
    rm -f "$SRC/62-nut-usbups.rules"
    [ -z "$why" ] && ! wait_until 60 is "root:root 664" perms "$node" && why="$node is $(perms "$node") after the revocation"
    [ -z "$why" ] && ! wait_until 60 logged "revoked 051d:0002: before hostbridge's grant" \
        && why="no revocation line naming the inherited grant"
    note=$(journalctl -u hostbridge --no-pager -o cat | grep -m1 "revoked 051d:0002: before hostbridge's grant")
    if [ -z "$why" ]; then
        result nut5 PASS "node root:nut 660 from the old glue; revoked: $note"
    else
        evidence
        result nut5 FAIL "$why"
    fi
}

t0=$(date +%s)
if why=$(setup 2>&1); then
    echo "--- setup took $(($(date +%s) - t0)) s"
    echo "$why"
    nut6
    nut1
    nut2
    nut3
    nut4
    nut5
else
    echo "$why"
    evidence
    result nut6 FAIL "setup: $(tail -1 <<<"$why")"
    result nut1 FAIL "setup: $(tail -1 <<<"$why")"
    result nut2 FAIL "setup: $(tail -1 <<<"$why")"
    result nut3 FAIL "setup: $(tail -1 <<<"$why")"
    result nut4 FAIL "setup: $(tail -1 <<<"$why")"
    result nut5 FAIL "setup: $(tail -1 <<<"$why")"
fi
