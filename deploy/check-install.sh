#!/bin/bash
# check-install.sh: proof that deploy/install.sh installs a working Deskbell on a fresh Debian 12 and upgrades it
# without losing data (docs/install.md, "How install.sh is checked"). Slow (6-15 minutes), so not in `make test`.
#
#   deploy/check-install.sh [--from REV|--no-upgrade-from] [--bundle FILE] [--root DIR] [--keep]
#
# 1. Bundles: this checkout's HEAD (`deskbell bundle`, or --bundle FILE), and REV's (default HEAD~1) to upgrade
#    from; made with network, like a machine that prepares an offline install.
# 2. A fresh Debian 12 root (debootstrap, cached in /var/cache/deskbell-check) with the distribution packages
#    install.sh asks for (install.sh --list-os-packages); unpacked with no network.
# 3. install.sh --offline REV's bundle, run in the root with no systemd (so its background fallback) inside a
#    network namespace that has only loopback: proof it needs no network at all.
# 4. From this machine, inside that namespace: /readyz on each web port and through nginx (TLS, the self-signed
#    certificate), a visitor chats over the WebSocket (tests/clients.py), the owner logs in and sees it.
# 5. install.sh --offline HEAD's bundle (the upgrade): same checks, the conversation and the owner's password
#    survived, the secrets did not change, the release switched; then the same bundle once more (idempotent:
#    nothing installed, processes restarted one by one, same checks).
# 6. Stops everything, unmounts, deletes the root (unless --keep). Run as root on a Debian/Ubuntu machine.
set -euo pipefail

REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
CACHE=/var/cache/deskbell-check
MIRROR=${DEBIAN_MIRROR:-http://deb.debian.org/debian}
SUITE=bookworm
NETNS=deskbell-check-$$
ROOT=/var/tmp/deskbell-check/root
FROM=HEAD~1 BUNDLE="" KEEP=0
STARTED=$SECONDS
declare -a TIMINGS=() NOTES=()

while (($#)); do
    case $1 in
        --from) FROM=$2; shift ;;
        --no-upgrade-from) FROM="" ;;
        --bundle) BUNDLE=$(realpath "$2"); shift ;;
        --root) ROOT=$(realpath -m "$2"); shift ;;
        --keep) KEEP=1 ;;
        *) sed -n '2,18p' "$0"; exit 2 ;;
    esac
    shift
done

log() { printf '\n[check %4ds] %s\n' $((SECONDS - STARTED)) "$*" >&2; }
fail() { log "FAILED: $*"; exit 1; }

# phase NAME COMMAND...: run it and remember how long it took.
phase() {
    local name=$1 start=$SECONDS
    shift
    log "$name"
    "$@"
    TIMINGS+=("$(printf '%-34s %4ds' "$name" $((SECONDS - start)))")
}

# -- 1. bundles ------------------------------------------------------------------------------------------------------
make_bundles() {
    mkdir -p "$CACHE"
    if [[ -z $BUNDLE ]]; then
        BUNDLE=$CACHE/deskbell-head.tar.gz
        "$REPO/.venv/bin/deskbell" bundle --out "$BUNDLE"
    fi
    OLD_BUNDLE=""
    [[ -n $FROM ]] || return 0
    # Bundles of older commits: keep the three newest.
    ls -1t "$CACHE"/deskbell-[0-9a-f]*.tar.gz 2>/dev/null | tail -n +4 | xargs -r rm -f
    # REV's code, bundled by this checkout's desk/bundle.py (REV may predate it).
    local commit worktree
    commit=$(git -C "$REPO" rev-parse --verify "$FROM^{commit}")
    OLD_BUNDLE=$CACHE/deskbell-${commit:0:12}.tar.gz
    [[ ! -f $OLD_BUNDLE ]] || return 0
    worktree=$(mktemp -d /var/tmp/deskbell-from.XXXXXX)
    git -C "$REPO" worktree add --detach "$worktree" "$commit" >/dev/null
    (cd "$REPO" && .venv/bin/python -c 'import sys; from pathlib import Path; from desk import bundle
bundle.build(Path(sys.argv[1]), checkout=Path(sys.argv[2]))' "$OLD_BUNDLE" "$worktree") || {
        git -C "$REPO" worktree remove --force "$worktree"; fail "could not bundle $FROM"; }
    git -C "$REPO" worktree remove --force "$worktree"
}

# -- 2. the Debian root ------------------------------------------------------------------------------------------
make_root() {
    command -v debootstrap >/dev/null || apt-get install -y -q debootstrap
    local packages tarball
    packages=$("$REPO/deploy/install.sh" --offline "$BUNDLE" --list-os-packages 2>/dev/null | paste -sd, -)
    # debootstrap does not resolve virtual packages, as apt does: python3.11-venv's python3.11-distutils is one.
    packages+=,python3-distutils
    # One tarball per package list: a new list downloads again, an unchanged one never does.
    tarball=$CACHE/$SUITE-minbase-$(sha256sum <<<"$packages" | cut -c1-12).tgz
    if [[ ! -f $tarball ]]; then
        log "downloading Debian $SUITE with $packages (cached as $tarball)"
        rm -rf "$CACHE/make-tarball"
        debootstrap --variant=minbase --include="$packages" --make-tarball="$tarball.partial" \
            "$SUITE" "$CACHE/make-tarball" "$MIRROR" >/dev/null
        mv "$tarball.partial" "$tarball"
        rm -rf "$CACHE/make-tarball"
    fi
    rm -rf "$ROOT"
    mkdir -p "$ROOT"
    # Unpacked with no network: packages' scripts that start services do so in the namespace, not on this host.
    ip netns exec "$NETNS" debootstrap --variant=minbase --include="$packages" --unpack-tarball="$tarball" \
        "$SUITE" "$ROOT" "$MIRROR" >"$ROOT.debootstrap.log" 2>&1 || {
        cp "$ROOT/debootstrap/debootstrap.log" "$ROOT.debootstrap-inside.log" 2>/dev/null || true
        fail "debootstrap: see $ROOT.debootstrap.log (in the root: dpkg --configure -a says why)"; }
    kill_root_processes # any service a package's script started
}

make_netns() {
    ip netns add "$NETNS"
    ip netns exec "$NETNS" ip link set lo up
}

mount_root() {
    mount -t proc proc "$ROOT/proc"
    mount --rbind /sys "$ROOT/sys" && mount --make-rslave "$ROOT/sys"
    mount --rbind /dev "$ROOT/dev" && mount --make-rslave "$ROOT/dev"
    # The installer from this checkout (so a change to it is checked before it is committed), and the bundles.
    mkdir -p "$ROOT/root/installer/desk"
    cp -a "$REPO/deploy" "$ROOT/root/installer/"
    cp "$REPO/desk/__init__.py" "$REPO/desk/bundle.py" "$ROOT/root/installer/desk/"
    cp "$BUNDLE" "$ROOT/root/new.tar.gz"
    [[ -z $OLD_BUNDLE ]] || cp "$OLD_BUNDLE" "$ROOT/root/old.tar.gz"
}

# in_root COMMAND...: run in the root, in the loopback-only namespace, with a clean environment.
in_root() {
    ip netns exec "$NETNS" chroot "$ROOT" /usr/bin/env -i PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \
        HOME=/root LANG=C.UTF-8 "$@"
}

# -- 3 and 5. install.sh -------------------------------------------------------------------------------------------
run_install() {
    local bundle=$1 out=$2
    in_root /root/installer/deploy/install.sh --offline "$bundle" --web 2 --workers 2 2>&1 | tee "$out" >&2 ||
        fail "install.sh failed (above)"
}

# -- 4. the checks, from this machine, in the namespace --------------------------------------------------------------
# check_chat STAGE: prints JSON; the first stage opens a conversation, the second finds it still there.
check_chat() {
    local stage=$1
    ip netns exec "$NETNS" env SSL_CERT_FILE="$ROOT/etc/deskbell/tls/deskbell.crt" \
        STAGE="$stage" SITE_KEY="$SITE_KEY" OWNER_EMAIL="$OWNER_EMAIL" OWNER_PASSWORD="$OWNER_PASSWORD" \
        CONVERSATION="${CONVERSATION:-}" \
        "$REPO/.venv/bin/python" - <<'EOF'
import json, os, sys
import httpx
sys.path.insert(0, ".")
from tests.clients import Agent, start_conversation

base = "https://127.0.0.1"
result = {"stage": os.environ["STAGE"]}
result["readyz"] = {port: httpx.get(f"http://127.0.0.1:{port}/readyz", timeout=10).json()["status"] for port in (8001, 8002)}
result["readyz_nginx"] = httpx.get(f"{base}/readyz", timeout=10).json()["status"]
result["http_redirects"] = httpx.get("http://127.0.0.1/console", timeout=10).status_code
body = f"Hello from the {result['stage']} install"
conversation = start_conversation(base, os.environ["SITE_KEY"], body)
agent = Agent(base)
agent.client.headers["Referer"] = f"{base}/login"  # as a browser sends it: Flask-WTF checks it over HTTPS
result["owner_login"] = agent.login(os.environ["OWNER_EMAIL"], os.environ["OWNER_PASSWORD"]).status_code
result["new_thread"] = agent.thread(conversation)
if os.environ["CONVERSATION"]:
    result["old_thread"] = agent.thread(os.environ["CONVERSATION"])
result["conversation"] = conversation
print(json.dumps(result))
EOF
}

# deskbell doctor in the root, every check including the edge through PUBLIC_URL (the certificate trusted).
# The edge check is reported, not required: the visitor's chat below proves the same path through nginx, and
# doctor's own probe needs httpx and websockets, which pyproject.toml lists only for the tests.
check_doctor() {
    local out edge
    out=$(in_root SSL_CERT_FILE=/etc/deskbell/tls/deskbell.crt /usr/local/bin/deskbell doctor --json) || true
    echo "$out" >&2
    edge=$(python3 -c '
import json, sys
checks = {c["name"]: c for c in json.loads(sys.argv[1])["checks"]}
failed = [c for c in checks.values() if not c["ok"] and c["name"] != "edge"]
assert set(checks) >= {"config", "database", "clock", "nats", "disk", "edge"} and not failed, failed
print(("ok " if checks["edge"]["ok"] else "FAIL ") + checks["edge"]["detail"])' "$out") ||
        fail "deskbell doctor does not pass: $out"
    NOTES+=("doctor's edge check: $edge")
}

first_checks() {
    check_doctor
    local out
    out=$(cd "$REPO" && check_chat first) || fail "checks after the first install"
    echo "$out" >&2
    CONVERSATION=$(python3 -c 'import json,sys; print(json.loads(sys.argv[1])["conversation"])' "$out")
    python3 - "$out" <<'EOF' || fail "after the first install: $out"
import json, sys
r = json.loads(sys.argv[1])
assert r["readyz"] == {"8001": "ok", "8002": "ok"}, r["readyz"]
assert r["readyz_nginx"] == "ok" and r["http_redirects"] == 301, r
assert r["owner_login"] == 200 and r["new_thread"] == ["Hello from the first install"], r
EOF
}

# later_checks STAGE: after a rerun of install.sh, everything answers, the owner's login and the first
# conversation are still there, and a new visitor can chat.
later_checks() {
    check_doctor
    local out
    out=$(cd "$REPO" && check_chat "$1") || fail "checks after the $1 install"
    echo "$out" >&2
    python3 - "$out" "$1" <<'EOF' || fail "after the $1 install: $out"
import json, sys
r = json.loads(sys.argv[1])
assert r["readyz"] == {"8001": "ok", "8002": "ok"} and r["readyz_nginx"] == "ok", r
assert r["owner_login"] == 200, "the owner's password changed"
assert r["old_thread"] == ["Hello from the first install"], "the first conversation is gone"
assert r["new_thread"] == [f"Hello from the {sys.argv[2]} install"], r
EOF
}

# What the first install printed once: the site key and the owner's login.
read_first_install() {
    SITE_KEY=$(sed -n 's/^ *site key: *//p' "$1")
    OWNER_EMAIL=$(sed -n 's/^ *owner: *//p' "$1")
    OWNER_PASSWORD=$(sed -n 's/^ *password: *\([^ ]*\).*/\1/p' "$1")
    [[ -n $SITE_KEY && -n $OWNER_PASSWORD ]] || fail "install.sh printed no site key or owner password"
    SECRET_BEFORE=$(grep '^SECRET_KEY=' "$ROOT/etc/deskbell/deskbell.env")
    RELEASE_BEFORE=$(readlink "$ROOT/opt/deskbell/current")
}

# After a rerun: the secrets are the same and the owner was left alone.
check_kept_state() {
    [[ $(grep '^SECRET_KEY=' "$ROOT/etc/deskbell/deskbell.env") == "$SECRET_BEFORE" ]] || fail "SECRET_KEY changed"
    ! grep -q '^ *password:' "$1" || fail "install.sh printed an owner password again: it touched the owner"
}

check_upgrade_kept_state() {
    check_kept_state "$1"
    local now
    now=$(readlink "$ROOT/opt/deskbell/current")
    log "release before: ${RELEASE_BEFORE##*/}, after: ${now##*/}"
    [[ -z $OLD_BUNDLE || $now != "$RELEASE_BEFORE" ]] || fail "the upgrade did not switch the release"
    RELEASE_BEFORE=$now
}

# The web and worker processes' pids, from the fallback's pid files.
app_pids() { cat "$ROOT"/run/deskbell/web@*.pid "$ROOT"/run/deskbell/worker@*.pid | sort | paste -sd' ' -; }

# The same bundle again: nothing new is installed, every web and worker process was restarted.
check_rerun_kept_state() {
    check_kept_state "$1"
    grep -q "already installed" "$1" || fail "the same bundle was installed again"
    [[ $(readlink "$ROOT/opt/deskbell/current") == "$RELEASE_BEFORE" ]] || fail "the release changed"
    local before=$2 after
    after=$(app_pids)
    log "processes before: $before; after: $after"
    [[ -z $(comm -12 <(tr ' ' '\n' <<<"$before" | sort) <(tr ' ' '\n' <<<"$after" | sort)) ]] ||
        fail "some processes were not restarted"
}

# -- 6. cleaning up --------------------------------------------------------------------------------------------------
# Processes whose root is the Debian root: ours, by their pid, whatever started them.
kill_root_processes() {
    local proc pid
    for proc in /proc/[0-9]*; do
        [[ $(readlink "$proc/root" 2>/dev/null) == "$ROOT" ]] || continue
        pid=${proc#/proc/}
        kill -TERM "$pid" 2>/dev/null || true
    done
    sleep 2
    for proc in /proc/[0-9]*; do
        [[ $(readlink "$proc/root" 2>/dev/null) == "$ROOT" ]] && kill -KILL "${proc#/proc/}" 2>/dev/null || true
    done
}

teardown() {
    local status=$?
    trap - EXIT
    log "stopping and cleaning up"
    if [[ -x $ROOT/root/installer/deploy/install.sh ]] && mountpoint -q "$ROOT/proc"; then
        in_root /root/installer/deploy/install.sh --stop >/dev/null 2>&1 || true
    fi
    [[ ! -d $ROOT ]] || kill_root_processes
    local mount
    for mount in dev sys proc; do umount -R "$ROOT/$mount" 2>/dev/null || umount -Rl "$ROOT/$mount" 2>/dev/null || true; done
    ip netns delete "$NETNS" 2>/dev/null || true
    if ((KEEP)); then log "kept $ROOT"; elif [[ -d $ROOT ]] && ! grep -q " $ROOT/" /proc/mounts; then rm -rf "$ROOT"; fi
    log "timings:"
    printf '    %s\n' "${TIMINGS[@]}" >&2
    ((${#NOTES[@]} == 0)) || { log "notes:"; printf '    %s\n' "${NOTES[@]}" >&2; }
    if ((status == 0)); then
        log "PASSED in $((SECONDS - STARTED)) s"
    else
        log "FAILED (exit $status) after $((SECONDS - STARTED)) s"
    fi
    exit "$status"
}

main() {
    [[ $(id -u) == 0 ]] || fail "run as root (debootstrap, chroot, mounts, network namespaces)"
    [[ -x $REPO/.venv/bin/deskbell ]] || fail "no $REPO/.venv: run make install first"
    trap teardown EXIT
    mkdir -p "$(dirname "$ROOT")"
    phase "bundles" make_bundles
    make_netns
    phase "Debian 12 root (debootstrap)" make_root
    mount_root
    local first=$ROOT/root/install-1.log second=$ROOT/root/install-2.log third=$ROOT/root/install-3.log
    local first_bundle=/root/new.tar.gz
    [[ -z $OLD_BUNDLE ]] || first_bundle=/root/old.tar.gz
    phase "install.sh (first install)" run_install "$first_bundle" "$first"
    read_first_install "$first"
    phase "checks after the first install" first_checks
    phase "install.sh again (upgrade)" run_install /root/new.tar.gz "$second"
    check_upgrade_kept_state "$second"
    phase "checks after the upgrade" later_checks upgraded
    local pids
    pids=$(app_pids)
    phase "install.sh a third time (same)" run_install /root/new.tar.gz "$third"
    check_rerun_kept_state "$third" "$pids"
    phase "checks after the third run" later_checks repeated
    cp "$first" "$second" "$third" "$(dirname "$ROOT")/" 2>/dev/null || true
}

main
