#!/usr/bin/env bash
# A cached Debian 13 ("trixie") chroot with GIMP 3 in it, for testing the GIMP plug-in on a machine
# whose own Debian has no GIMP 3 (Debian 12 ships GIMP 2.10 without Python).
#
#   gimp3-chroot.sh ensure                      build the chroot once (or reuse it); print its path
#   gimp3-chroot.sh exec [--bind DIR]... -- CMD run CMD inside it, in a private mount namespace;
#                                               each DIR is bound at the same absolute path inside;
#                                               with NST_GIMP_OVERLAY=DIR, writes (e.g. apt-get
#                                               install xvfb) go to an overlay kept in DIR
#   gimp3-chroot.sh check                       exit 0 if this machine can build/enter the chroot,
#                                               else print the reason on stdout and exit 1
#   gimp3-chroot.sh mirror                      print the Debian mirror the build would use
#
# Exit status 77 means "cannot be done on this machine" (debootstrap not installable).
#
# Needs root (chroot, mount), unshare (util-linux) and debootstrap (installed from the machine's own
# apt sources if missing). The package mirror is read from the machine's apt sources (override:
# NST_DEBIAN_MIRROR); nothing else is downloaded. The chroot lives in
# ${NST_GIMP_CHROOT:-/var/tmp/nst-gimp3-root}; it is built in a sibling folder and renamed when
# complete, under flock, and carries a versioned stamp: bump STAMP_VERSION to force a rebuild.
# Measured with a warm Debian mirror: about 1 minute and 120 MB of downloads cold; 515 MB on disk.
#
# Mounts happen only inside `unshare --mount --fork`, so nothing leaks into the host's mount table,
# even when a run is killed. See shared/research/gimp3-plugin.md (sections 2, 7 and 8).
set -euo pipefail

STAMP_VERSION=1   # bump when the package list or the build steps change
SUITE=trixie
PACKAGES="gimp python3-gi gir1.2-gimp-3.0"
ROOT=${NST_GIMP_CHROOT:-/var/tmp/nst-gimp3-root}
STAMP="$ROOT/.nst-gimp3-stamp"
STAMP_TEXT="nst-gimp3-chroot v$STAMP_VERSION $SUITE $PACKAGES"
LOCK="$ROOT.lock"
# A GIMP config folder warmed once (first start of GIMP in an empty folder costs ~4 s); runs copy it.
TEMPLATE=/opt/gimp-config-template

log() { echo "gimp3-chroot: $*" >&2; }
die() { log "error: $*"; exit 1; }

debian_mirror() {
    # The first Debian (not security) URI of the machine's apt sources, deb822 or one-line format.
    if [ -n "${NST_DEBIAN_MIRROR:-}" ]; then echo "$NST_DEBIAN_MIRROR"; return; fi
    local uri
    uri=$(cat /etc/apt/sources.list.d/*.sources 2>/dev/null \
          | awk '/^URIs:/{for (i = 2; i <= NF; i++) if ($i !~ /security/) {print $i; exit}}')
    if [ -z "$uri" ]; then
        uri=$(cat /etc/apt/sources.list /etc/apt/sources.list.d/*.list 2>/dev/null \
              | awk '$1 == "deb" {for (i = 2; i <= NF; i++) if ($i ~ /^(https?|file):/ && $i !~ /security/) {print $i; exit}}' \
              | head -n1)
    fi
    [ -n "$uri" ] || return 1
    echo "$uri"
}

check() {
    # Print why the chroot cannot be used here, if it cannot; exit status 0 when it can.
    if [ "$(id -u)" != 0 ]; then echo "needs root (chroot and mounts); running as uid $(id -u)"; return 1; fi
    command -v unshare >/dev/null || { echo "unshare (util-linux) not found"; return 1; }
    command -v chroot >/dev/null || [ -x /usr/sbin/chroot ] || { echo "chroot not found"; return 1; }
    if ! unshare --mount --fork true 2>/dev/null; then
        echo "unshare --mount is not permitted here (no CAP_SYS_ADMIN?)"; return 1
    fi
    if [ -f "$STAMP" ] && [ "$(cat "$STAMP")" = "$STAMP_TEXT" ]; then return 0; fi
    if ! command -v debootstrap >/dev/null && ! command -v apt-get >/dev/null; then
        echo "debootstrap is missing and there is no apt-get to install it"; return 1
    fi
    debian_mirror >/dev/null || { echo "no Debian mirror found in the apt sources (set NST_DEBIAN_MIRROR)"; return 1; }
}

in_root() {
    # in_root DIR CMD...: run CMD chrooted in DIR with proc and a private /dev/shm, in a fresh mount namespace.
    local dir=$1; shift
    unshare --mount --fork -- bash -euc '
        dir=$1; shift
        mount --make-rprivate /
        mount -t proc proc "$dir/proc"
        mount -t tmpfs tmpfs "$dir/dev/shm"
        exec /usr/sbin/chroot "$dir" /usr/bin/env -i HOME=/root PATH=/usr/sbin:/usr/bin:/sbin:/bin \
            LANG=C.UTF-8 DEBIAN_FRONTEND=noninteractive "$@"' in_root "$dir" "$@"
}

build() {
    local mirror tmp t0=$SECONDS
    mirror=$(debian_mirror) || die "no Debian mirror found in the apt sources (set NST_DEBIAN_MIRROR)"
    if ! command -v debootstrap >/dev/null; then
        log "installing debootstrap on the host"
        if ! { apt-get update -qq && apt-get install -y -qq debootstrap; } >&2; then
            log "debootstrap is not installed and cannot be installed with apt-get"
            exit 77  # "cannot be done here": callers skip rather than fail
        fi
    fi
    tmp="$ROOT.building"
    rm -rf "$tmp" "$ROOT"
    log "debootstrap --variant=minbase $SUITE from $mirror (about a minute; ~120 MB from the mirror)"
    debootstrap --variant=minbase "$SUITE" "$tmp" "$mirror" >"$ROOT.debootstrap.log" 2>&1 \
        || { tail -n 20 "$ROOT.debootstrap.log" >&2; die "debootstrap failed (log: $ROOT.debootstrap.log)"; }
    # No docs, man pages or translations: ~90 MB less. Snapshot mirrors have expired Release dates.
    cat >"$tmp/etc/dpkg/dpkg.cfg.d/01-nst-nodoc" <<'EOF'
path-exclude=/usr/share/doc/*
path-exclude=/usr/share/man/*
path-exclude=/usr/share/info/*
path-exclude=/usr/share/locale/*
path-include=/usr/share/locale/locale.alias
EOF
    cat >"$tmp/etc/apt/apt.conf.d/99-nst" <<'EOF'
Acquire::Check-Valid-Until "false";
APT::Install-Recommends "false";
EOF
    cp /etc/resolv.conf "$tmp/etc/resolv.conf" 2>/dev/null || true
    log "apt-get install $PACKAGES"
    in_root "$tmp" sh -c "apt-get update -qq && apt-get install -y -qq --no-install-recommends $PACKAGES \
        && apt-get clean && rm -rf /var/lib/apt/lists/*" >"$ROOT.apt.log" 2>&1 \
        || { tail -n 20 "$ROOT.apt.log" >&2; die "apt-get install in the chroot failed (log: $ROOT.apt.log)"; }
    log "warming a GIMP config template"
    in_root "$tmp" env GIMP3_DIRECTORY=$TEMPLATE timeout 120 gimp-console-3.0 -i -d -f \
        --batch-interpreter=python-fu-eval -b 'pass' --quit >"$ROOT.warm.log" 2>&1 \
        || { tail -n 20 "$ROOT.warm.log" >&2; die "first GIMP start in the chroot failed"; }
    [ -f "$tmp$TEMPLATE/pluginrc" ] || die "GIMP did not write $TEMPLATE/pluginrc"
    echo "$STAMP_TEXT" >"$tmp/.nst-gimp3-stamp"
    mv "$tmp" "$ROOT"
    log "built $ROOT in $((SECONDS - t0)) s ($(du -sh "$ROOT" | cut -f1))"
}

ensure() {
    mkdir -p "$(dirname "$ROOT")"
    exec 9>"$LOCK"
    flock 9
    if [ -f "$STAMP" ] && [ "$(cat "$STAMP")" = "$STAMP_TEXT" ]; then
        log "reusing $ROOT"
    else
        build
    fi
    flock -u 9
    echo "$ROOT"
}

run_in() {
    # exec [--bind DIR]... -- CMD...: CMD in the chroot; DIRs are bound read-write at their own path.
    local binds=()
    while [ $# -gt 0 ]; do
        case $1 in
            --bind) binds+=("$(realpath "$2")"); shift 2 ;;
            --) shift; break ;;
            *) die "exec: unknown option $1" ;;
        esac
    done
    [ $# -gt 0 ] || die "exec: no command"
    [ -f "$STAMP" ] || die "no chroot at $ROOT; run '$0 ensure' first"
    # A shared lock: a rebuild (exclusive) waits until no run uses the chroot.
    exec 9>"$LOCK"
    flock -s 9
    unshare --mount --fork -- bash -euc '
        root=$1; overlay=$2; nbinds=$3; shift 3
        mount --make-rprivate /
        if [ -n "$overlay" ]; then  # changes go to $overlay/upper; the cached chroot stays as built
            mkdir -p "$overlay/upper" "$overlay/work" "$overlay/merged"
            mount -t overlay overlay -o "lowerdir=$root,upperdir=$overlay/upper,workdir=$overlay/work" \
                "$overlay/merged"
            root=$overlay/merged
        fi
        mount -t proc proc "$root/proc"
        mount -t tmpfs tmpfs "$root/dev/shm"
        mount -t tmpfs tmpfs "$root/tmp"
        for ((i = 0; i < nbinds; i++)); do
            mkdir -p "$root$1"; mount --bind "$1" "$root$1"; shift
        done
        exec /usr/sbin/chroot "$root" "$@"' run_in "$ROOT" "${NST_GIMP_OVERLAY:-}" "${#binds[@]}" "${binds[@]}" "$@"
}

case ${1:-} in
    ensure) ensure ;;
    exec) shift; run_in "$@" ;;
    check) check ;;
    mirror) debian_mirror ;;
    *) echo "usage: $0 ensure | exec [--bind DIR]... -- CMD... | check | mirror" >&2; exit 2 ;;
esac
