# Helpers for the guest scenario scripts (sourced). Runs in the VM as root.
# /mnt/host is the 9p share the host prepared: the hostbridge binary, the
# project's unit, these scripts.

HB=/usr/local/bin/hostbridge
SHARE=/mnt/host

# install_hostbridge: the binary and the project's own unit, as an operator
# would (units/hostbridge.service expects /usr/local/bin/hostbridge and
# /etc/hostbridge/config.yaml).
install_hostbridge() {
    install -D -m 0755 "$SHARE/hostbridge" "$HB"
    install -D -m 0644 "$SHARE/hostbridge.service" /etc/systemd/system/hostbridge.service
    mkdir -p /etc/hostbridge
    systemctl daemon-reload
}

# result N PASS|FAIL DETAIL: the machine-readable line tests/vm.rs parses.
result() {
    echo "HB-SCENARIO $1 $2 $3"
}

# wait_until SECONDS CMD...: runs CMD until it succeeds, at most SECONDS.
# A poll with a deadline, not a sleep used as synchronisation.
wait_until() {
    local deadline=$(($(date +%s) + $1))
    shift
    until "$@" >/dev/null 2>&1; do
        [ "$(date +%s)" -lt "$deadline" ] || return 1
        sleep 0.2
    done
}

# node_of VID PID: /dev/bus/usb/BBB/DDD of the first device with that id.
node_of() {
    local d
    for d in /sys/bus/usb/devices/*; do
        [ -f "$d/idVendor" ] || continue
        if [ "$(cat "$d/idVendor")" = "$1" ] && [ "$(cat "$d/idProduct")" = "$2" ]; then
            printf /dev/bus/usb/%03d/%03d "$(cat "$d/busnum")" "$(cat "$d/devnum")"
            return 0
        fi
    done
    return 1
}

# perms NODE: "owner:group mode", e.g. "root:nut 660".
perms() {
    stat -c '%U:%G %a' "$1"
}

# is VALUE CMD...: whether CMD prints VALUE.
is() {
    local want=$1
    shift
    [ "$("$@" 2>/dev/null)" = "$want" ]
}

# status_jq FILTER: a field of `hostbridge status --json`.
status_jq() {
    "$HB" status --json 2>/dev/null | jq -r "$1"
}

# evidence: what to look at when a scenario fails.
evidence() {
    echo "--- evidence"
    ls -l /dev/bus/usb/*/* /run/udev/rules.d 2>&1
    "$HB" status 2>&1
    journalctl -u hostbridge --no-pager -n 40 -o cat 2>&1
    journalctl -u systemd-udevd --no-pager -n 15 -o cat 2>&1
    echo "--- end of evidence"
}

# podman_for_this_guest: this minimal guest has no D-Bus and no firewall
# tools, which podman's defaults need (a Fedora CoreOS host has both):
# cgroupfs, no firewall.
podman_for_this_guest() {
    mkdir -p /etc/containers/containers.conf.d
    printf '[engine]\ncgroup_manager = "cgroupfs"\n[network]\nfirewall_driver = "none"\n' \
        >/etc/containers/containers.conf.d/90-vm-guest.conf
}

# nut_udev_config SRC [THEN-LINE...]: /etc/hostbridge/config.yaml with one
# bridge, nut-udev, from SRC into /run/udev/rules.d, reloading and
# triggering udev, then the extra `then:` lines given (YAML, one each).
nut_udev_config() {
    local src=$1 line
    shift
    cat >/etc/hostbridge/config.yaml <<YAML
bridges:
  - name: nut-udev
    kind: udev-rules
    source: $src
    include: ["*.rules"]
    install_to: /run/udev/rules.d
    then:
      - udev-reload
      - udev-trigger: { subsystem: usb, action: add }
YAML
    for line in "$@"; do
        echo "      - $line" >>/etc/hostbridge/config.yaml
    done
}
