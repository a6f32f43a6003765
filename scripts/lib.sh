# Shared helpers for scripts/*. Sourced, not run.

# ensure_packages PKG...: installs the Debian packages that are missing, and
# only those (apt-get update runs once, only when something is missing).
ensure_packages() {
    local missing=() p
    for p in "$@"; do
        dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
    done
    [ ${#missing[@]} -eq 0 ] && return 0
    local sudo=()
    [ "$(id -u)" -eq 0 ] || sudo=(sudo)
    echo "==> installing missing Debian packages: ${missing[*]}"
    "${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get update -qq
    # RUNLEVEL=1: never start the services being installed (e.g. nginx).
    "${sudo[@]}" env DEBIAN_FRONTEND=noninteractive RUNLEVEL=1 apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
}

# ensure_build_deps: what building hostbridge needs: a C toolchain for
# crates with C parts, and libudev (via pkg-config) for the USB hotplug
# monitor.
ensure_build_deps() {
    ensure_packages gcc libc6-dev pkg-config libudev-dev
}

# step NAME CMD...: prints a header, runs the command.
step() {
    echo "==> $1"
    shift
    "$@"
}
