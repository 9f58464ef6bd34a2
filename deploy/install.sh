#!/bin/bash
# Install or upgrade Deskbell on this server (Debian 12, Ubuntu 22.04 or newer), as root. docs/install.md.
#
#   deploy/install.sh [--domain NAME] [--email ADDRESS] [--certbot] [--web N] [--workers N]
#                     [--offline BUNDLE] [--owner-email ADDRESS] [--company NAME] [--no-systemd] [--dry-run]
#   deploy/install.sh --stop | --list-os-packages [--offline BUNDLE]
#
# The first run installs everything and prints the address and the owner's password, once. A later run upgrades
# in place: it keeps the configuration, the secrets and the data, installs the new code beside the old, migrates
# (migrations are expand-only, so the old processes keep working), then restarts the processes one by one.
set -euo pipefail
# shellcheck source-path=SCRIPTDIR

# -- where things go (docs/install.md, "What install.sh changes") ------------------------------------------------
APP_USER=deskbell
PREFIX=/opt/deskbell                  # releases/<version>-<commit>/{app,venv}; current -> the running one
DATA=/var/lib/deskbell                # DESKBELL_DATA: attachments; nats/ is the JetStream store
CONF=/etc/deskbell
ENV_FILE=$CONF/deskbell.env           # every process's settings and secrets (0600)
STATE_FILE=$CONF/install.conf         # this script's choices, read back by the next run
TLS_DIR=$CONF/tls                     # the self-signed certificate (public) and its key (0600)
UNIT_DIR=/etc/systemd/system
SITE=/etc/nginx/sites-available/deskbell
ACME_ROOT=/var/www/deskbell-acme      # certbot --webroot
LOG_DIR=/var/log/deskbell             # process logs without systemd (with it: the journal)
PID_DIR=/run/deskbell                 # pid files without systemd
NATS_PORT=4222
FIRST_WEB_PORT=8001
APP_DB_ROLE=deskbell_app              # the role row-level security binds (desk/db.py, migration 0008)
READ_TIMEOUT=60                       # nginx's; above DESKBELL_POLL_SECONDS (25)
KEEP_RELEASES=3
SCRIPT_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)

# -- options -------------------------------------------------------------------------------------------------------
DOMAIN="" EMAIL="" CERTBOT=0 WEB="" WORKERS="" OFFLINE="" OWNER_EMAIL="" COMPANY="" DRY_RUN=0 ACTION=install
FORCE_NO_SYSTEMD=0

usage() {
    sed -n '2,6p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//'
    cat <<'EOF'

  --domain NAME         the name browsers use (default: this machine's address); with --email, a certbot line
  --email ADDRESS       for Let's Encrypt (with --domain); --certbot runs certbot instead of printing the line
  --web N, --workers N  copies of each process (default 2, or what the last run chose)
  --offline BUNDLE      install from `deskbell bundle`'s .tar.gz (or its extracted folder), with no network
  --owner-email, --company   the first owner account and company name (first run only)
  --no-systemd          start the processes in the background, with pid files, instead of systemd units
  --dry-run             print what would be done, change nothing
  --stop                stop Deskbell's processes (without systemd: also nginx and PostgreSQL)
  --list-os-packages    print the distribution packages this script installs
EOF
}

parse_args() {
    while (($#)); do
        case $1 in
            --domain) DOMAIN=${2:?--domain needs a name}; shift ;;
            --email) EMAIL=${2:?--email needs an address}; shift ;;
            --certbot) CERTBOT=1 ;;
            --web) WEB=${2:?--web needs a number}; shift ;;
            --workers) WORKERS=${2:?--workers needs a number}; shift ;;
            --offline) OFFLINE=$(realpath "${2:?--offline needs a bundle}"); shift ;;
            --owner-email) OWNER_EMAIL=${2:?}; shift ;;
            --company) COMPANY=${2:?}; shift ;;
            --no-systemd) FORCE_NO_SYSTEMD=1 ;;
            --dry-run) DRY_RUN=1 ;;
            --stop) ACTION=stop ;;
            --list-os-packages) ACTION=list ;;
            -h | --help) usage; exit 0 ;;
            *) usage >&2; die "unknown option: $1" ;;
        esac
        shift
    done
    [[ -z $WEB || $WEB =~ ^[1-9][0-9]?$ ]] || die "--web takes a number from 1 to 99"
    [[ -z $WORKERS || $WORKERS =~ ^[1-9][0-9]?$ ]] || die "--workers takes a number from 1 to 99"
    ((!CERTBOT)) || [[ -n $DOMAIN && -n $EMAIL ]] || die "--certbot needs --domain and --email"
}

# -- output and dry-run ----------------------------------------------------------------------------------------
step() { printf '\n==> %s\n' "$*" >&2; }
say() { printf '    %s\n' "$*" >&2; }
die() { printf '\ninstall.sh: %s\n' "$*" >&2; exit 1; }

# Every change to the machine goes through run or put_file, so that --dry-run shows it instead.
run() {
    if ((DRY_RUN)); then say "would run: $*"; else "$@"; fi
}

# put_file PATH MODE OWNER: write standard input to PATH if it differs; status 0 when the file changed.
put_file() {
    local path=$1 mode=$2 owner=$3 new
    new=$(cat)
    if [[ -f $path ]] && [[ $(cat "$path") == "$new" ]]; then return 1; fi
    if ((DRY_RUN)); then say "would write $path"; return 0; fi
    install -d "$(dirname "$path")"
    printf '%s\n' "$new" >"$path.new"
    chmod "$mode" "$path.new" && chown "$owner" "$path.new" && mv "$path.new" "$path"
    say "wrote $path"
}

# -- the machine -----------------------------------------------------------------------------------------------
SYSTEMD=0
check_machine() {
    [[ $(id -u) == 0 ]] || die "run me as root (sudo $0 ...)"
    [[ -r /etc/os-release ]] || die "no /etc/os-release: this script is for Debian 12 and Ubuntu 22.04 or newer"
    # shellcheck disable=SC1091
    . /etc/os-release
    case "${ID:-}:${VERSION_ID:-}" in
        debian:1[2-9]* | ubuntu:2[2-9].* | ubuntu:[3-9]*) ;;
        *) say "warning: ${PRETTY_NAME:-this system} is not Debian 12+ or Ubuntu 22.04+; trying anyway" ;;
    esac
    # systemd is PID 1 when this folder exists (sd_booted(3)); not in a chroot or most containers.
    if [[ -d /run/systemd/system ]] && ((!FORCE_NO_SYSTEMD)); then SYSTEMD=1; fi
    ((SYSTEMD)) || say "no systemd running: processes start in the background (logs in $LOG_DIR)"
}

# The Python the bundle was made for (its compiled wheels fit no other), else the newest 3.11+ here.
PY_VERSION=""
choose_python() {
    if [[ -n $BUNDLE_DIR ]]; then
        PY_VERSION=$(sed -n '/"python": {/,/}/s/.*"version": "\([0-9.]*\)".*/\1/p' "$BUNDLE_DIR/manifest.json")
        [[ -n $PY_VERSION ]] || die "$BUNDLE_DIR/manifest.json names no Python version: not a Deskbell bundle?"
        local machine
        machine=$(sed -n '/"python": {/,/}/s/.*"machine": "\([^"]*\)".*/\1/p' "$BUNDLE_DIR/manifest.json")
        [[ $machine == "$(uname -m)" ]] || die "the bundle was made on $machine, this machine is $(uname -m)"
        return
    fi
    local v
    for v in 3.13 3.12 3.11; do
        if command -v "python$v" >/dev/null; then PY_VERSION=$v; return; fi
    done
    PY_VERSION=3.11 # Ubuntu 22.04's python3 is 3.10: its python3.11 package is in universe
}

os_packages() {
    local packages=(postgresql nginx openssl ca-certificates "python$PY_VERSION-venv")
    if [[ -z $BUNDLE_DIR ]]; then # building the bundle here (online install) needs these too
        [[ -e $CHECKOUT/node_modules/htmx.org ]] || packages+=(npm)
        [[ ! -e $CHECKOUT/.git ]] || packages+=(git)
    fi
    ((!CERTBOT)) || packages+=(certbot)
    printf '%s\n' "${packages[@]}"
}

install_os_packages() {
    step "Distribution packages"
    local missing=() package
    for package in $(os_packages); do
        dpkg-query -W -f='${Status}' "$package" 2>/dev/null | grep -q "install ok installed" || missing+=("$package")
    done
    if ((${#missing[@]} == 0)); then say "all there: $(os_packages | tr '\n' ' ')"; return; fi
    say "installing: ${missing[*]}"
    if ! run env DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "${missing[@]}"; then
        run apt-get update -q || true
        run env DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "${missing[@]}" ||
            die "could not install ${missing[*]}: without network, install them from your distribution's media first"
    fi
}

# -- the bundle: given (--offline), or made here from this checkout ------------------------------------------------
WORK="" BUNDLE_DIR="" CHECKOUT="" RELEASE="" PY="" SAVED_NAME=""
cleanup() { [[ -z $WORK ]] || rm -rf "$WORK"; }

open_bundle() {
    WORK=$(mktemp -d /var/tmp/deskbell-install.XXXXXX)
    trap cleanup EXIT
    if [[ -z $OFFLINE ]]; then
        CHECKOUT=$(cd "$SCRIPT_DIR/.." && pwd)
        [[ -f $CHECKOUT/pyproject.toml && -d $CHECKOUT/desk ]] ||
            die "no --offline bundle, and $CHECKOUT is not a Deskbell checkout to make one from"
        return
    fi
    step "Bundle $OFFLINE"
    if [[ -d $OFFLINE ]]; then
        BUNDLE_DIR=$OFFLINE
    else
        tar -xzf "$OFFLINE" -C "$WORK" || die "cannot read $OFFLINE as a .tar.gz"
        BUNDLE_DIR=$WORK/deskbell-bundle
    fi
    [[ -f $BUNDLE_DIR/manifest.json ]] || die "$OFFLINE holds no deskbell-bundle/manifest.json"
}

# Online install: the same path as offline, with a bundle made here first (needs the package registries).
build_bundle() {
    [[ -z $BUNDLE_DIR ]] || return 0
    step "Bundle from $CHECKOUT (pip wheel and npm need the package registries)"
    if ((DRY_RUN)); then say "would run: python -m desk.bundle build (in a temporary virtual environment)"; return; fi
    "$PY" -m venv "$WORK/build-venv"
    (cd "$CHECKOUT" && "$WORK/build-venv/bin/python" -m desk.bundle build --out "$WORK/bundle.tar.gz")
    tar -xzf "$WORK/bundle.tar.gz" -C "$WORK"
    BUNDLE_DIR=$WORK/deskbell-bundle
}

verify_bundle() {
    if [[ -z $BUNDLE_DIR || -z $PY ]]; then RELEASE="(not known in a dry run)"; return; fi
    # This installer's own copy of desk/bundle.py reads the manifest: the one that matches this script.
    local report
    report=$(cd "$SCRIPT_DIR/.." && "$PY" -m desk.bundle verify "$BUNDLE_DIR") || die "the bundle is damaged (above)"
    RELEASE=$(sed 's/.*"release": "\([^"]*\)".*/\1/' <<<"$report")
    say "checksums match; release $RELEASE for Python $PY_VERSION"
}

# -- user, folders, code -----------------------------------------------------------------------------------------
create_user_and_folders() {
    step "System user $APP_USER and folders"
    getent passwd "$APP_USER" >/dev/null ||
        run useradd --system --user-group --home-dir "$DATA" --no-create-home --shell /usr/sbin/nologin "$APP_USER"
    run install -d -m 0755 "$PREFIX" "$PREFIX/releases"
    run install -d -m 0750 -o "$APP_USER" -g "$APP_USER" "$DATA" "$DATA/nats"
    run install -d -m 0755 "$CONF"
    run install -d -m 0755 "$TLS_DIR"
}

# The code in its own folder with its own virtual environment: the running processes keep theirs until each is
# restarted, and the previous release stays for a rollback (docs/install.md, "Upgrade").
install_release() {
    step "Code: $PREFIX/releases/$RELEASE"
    local dest=$PREFIX/releases/$RELEASE
    if [[ -f $dest/.complete ]]; then say "already installed"; return; fi
    ((!DRY_RUN)) || { say "would copy the source, make $dest/venv, pip install --no-index from the bundle"; return; }
    rm -rf "$dest"
    mkdir -p "$dest"
    cp -a "$BUNDLE_DIR/source" "$dest/app"
    "$PY" -m venv "$dest/venv"
    # --no-index: the bundle's wheels and nothing else, so this works with no network at all. Editable: the code
    # reads its templates, config/ and node_modules/ beside the packages (desk/settings.py's ROOT).
    "$dest/venv/bin/pip" install --quiet --no-index --no-cache-dir --disable-pip-version-check \
        --find-links "$BUNDLE_DIR/wheels" --editable "$dest/app"
    # The units make /opt read-only (ProtectSystem=strict): compile now rather than at every start.
    "$dest/venv/bin/python" -m compileall -q "$dest/app/desk" "$dest/app/web" "$dest/app/workers" >/dev/null
    chown -R root:root "$dest"
    chmod -R go-w,a+rX "$dest"
    touch "$dest/.complete"
    say "installed"
}

SWITCHED=""
switch_current() {
    local dest=$PREFIX/releases/$RELEASE
    [[ $(readlink "$PREFIX/current" 2>/dev/null) != "$dest" && $SWITCHED != "$dest" ]] || return 0
    SWITCHED=$dest
    run ln -sfn "$dest" "$PREFIX/current.new"
    run mv -T "$PREFIX/current.new" "$PREFIX/current"
    say "current -> $dest"
}

prune_releases() {
    local current old
    current=$(readlink -f "$PREFIX/current" 2>/dev/null || true)
    # Newest first; keep KEEP_RELEASES of them, and always the current one.
    for old in $(ls -1dt "$PREFIX"/releases/*/ 2>/dev/null | tail -n +$((KEEP_RELEASES + 1))); do
        [[ ${old%/} == "$current" ]] || run rm -rf "${old%/}"
    done
}

# The `deskbell` command with the server's settings, as the deskbell user: `sudo deskbell doctor`.
install_command() {
    put_file /usr/local/bin/deskbell 0755 root:root <"$SCRIPT_DIR/deskbell-command" || true
}

# deskbell_as RELEASE_DIR ARGS...: the deskbell command of that release, with the settings, as the deskbell user.
deskbell_as() {
    local dest=$1
    shift
    (
        set -a
        # shellcheck disable=SC1090
        . "$ENV_FILE"
        set +a
        cd "$DATA"
        exec setpriv --reuid="$APP_USER" --regid="$APP_USER" --init-groups env HOME="$DATA" "$dest/venv/bin/deskbell" "$@"
    )
}

# -- configuration -----------------------------------------------------------------------------------------------
SERVER_NAME=""
# --domain, else the name an earlier run chose (an address may change; PUBLIC_URL does not follow it), else the
# machine's first address.
choose_server_name() {
    if [[ -n $DOMAIN ]]; then SERVER_NAME=$DOMAIN; return; fi
    if [[ -n $SAVED_NAME ]]; then SERVER_NAME=$SAVED_NAME; return; fi
    local address=""
    read -r address _ < <(hostname -I 2>/dev/null || true) || true
    SERVER_NAME=${address:-127.0.0.1}
}

choose_owner() {
    local domain=deskbell.local
    [[ ! $SERVER_NAME =~ [a-z] || $SERVER_NAME == localhost ]] || domain=$SERVER_NAME
    OWNER_EMAIL=${OWNER_EMAIL:-${EMAIL:-owner@$domain}}
    COMPANY=${COMPANY:-My company}
}

# Secrets are made once and kept; a setting this version adds is appended; PUBLIC_URL follows --domain.
write_env_file() {
    step "Configuration $ENV_FILE"
    local public_url=https://$SERVER_NAME
    if [[ ! -f $ENV_FILE ]]; then
        ((!DRY_RUN)) || { say "would write $ENV_FILE with a new SECRET_KEY and METRICS_TOKEN"; return; }
        umask 077
        cat >"$ENV_FILE" <<EOF
# Deskbell's settings (docs/operations.md, "Configuration"), read by every process. Written once by
# deploy/install.sh, which keeps your changes; mode 0600: it holds the secrets.
DESKBELL_ENV=production
DATABASE_URL=postgresql://$APP_USER@/$APP_USER?host=/var/run/postgresql
NATS_URL=nats://127.0.0.1:$NATS_PORT
SECRET_KEY=$(openssl rand -hex 32)
PUBLIC_URL=$public_url
TRUSTED_PROXIES=127.0.0.1
METRICS_TOKEN=$(openssl rand -hex 24)
DESKBELL_DATA=$DATA
EOF
        umask 022
        say "wrote $ENV_FILE (new secrets)"
        return
    fi
    ensure_setting METRICS_TOKEN "$(openssl rand -hex 24)"
    ensure_setting DESKBELL_DATA "$DATA"
    ensure_setting TRUSTED_PROXIES 127.0.0.1
    if [[ -n $DOMAIN ]] && ! grep -qx "PUBLIC_URL=$public_url" "$ENV_FILE"; then
        run sed -i "s|^PUBLIC_URL=.*|PUBLIC_URL=$public_url|" "$ENV_FILE"
        say "PUBLIC_URL=$public_url"
    fi
    say "kept (secrets unchanged)"
}

ensure_setting() {
    grep -q "^$1=" "$ENV_FILE" && return 0
    if ((DRY_RUN)); then say "would add $1 to $ENV_FILE"; else printf '%s=%s\n' "$1" "$2" >>"$ENV_FILE"; fi
}

# The last run's choices, where this run's options say nothing.
load_state() {
    saved() { [[ ! -f $STATE_FILE ]] || sed -n "s/^$1=//p" "$STATE_FILE" | tail -n 1; }
    WEB=${WEB:-$(saved WEB)} WORKERS=${WORKERS:-$(saved WORKERS)} DOMAIN=${DOMAIN:-$(saved DOMAIN)}
    WEB=${WEB:-2} WORKERS=${WORKERS:-2}
    OWNER_EMAIL=${OWNER_EMAIL:-$(saved OWNER_EMAIL)} SITE_KEY=$(saved SITE_KEY) SAVED_NAME=$(saved SERVER_NAME)
}

save_state() {
    put_file "$STATE_FILE" 0600 root:root <<EOF || true
# deploy/install.sh's choices, read back by its next run (edit them, or pass the options again).
WEB=$WEB
WORKERS=$WORKERS
DOMAIN=${DOMAIN:-}
SERVER_NAME=$SERVER_NAME
SITE_KEY=${SITE_KEY:-}
OWNER_EMAIL=${OWNER_EMAIL:-}
EOF
}

# -- PostgreSQL --------------------------------------------------------------------------------------------------
setup_postgres() {
    step "PostgreSQL: database and role $APP_USER"
    if ((SYSTEMD)); then
        run systemctl enable --now postgresql
    else
        local version cluster _port status _rest
        while read -r version cluster _port status _rest; do
            [[ $status == online* ]] || run pg_ctlcluster "$version" "$cluster" start
        done < <(pg_lsclusters -h)
    fi
    ((!DRY_RUN)) || { say "would create role $APP_USER, role $APP_DB_ROLE and database $APP_USER"; return; }
    local _
    for _ in $(seq 60); do pg_isready -q && break; sleep 1; done
    pg_isready -q || die "PostgreSQL does not answer (pg_lsclusters; its log is in /var/log/postgresql)"
    # The login has no superuser, no CREATEROLE: the migration's role for row-level security is made here.
    # It connects over the Unix socket as the system user of the same name (peer authentication): no password.
    runuser -u postgres -- psql -q -v ON_ERROR_STOP=1 <<EOF
SET client_min_messages = warning;
DO \$\$ BEGIN
  IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = '$APP_USER') THEN CREATE ROLE $APP_USER LOGIN; END IF;
  IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = '$APP_DB_ROLE') THEN CREATE ROLE $APP_DB_ROLE NOLOGIN; END IF;
END \$\$;
GRANT $APP_DB_ROLE TO $APP_USER;
SELECT 'CREATE DATABASE $APP_USER OWNER $APP_USER' WHERE NOT EXISTS (SELECT FROM pg_database WHERE datname = '$APP_USER')
\gexec
EOF
    say "ready"
}

# Processes (systemd units or the background fallback) and nginx with TLS live beside this script.
# shellcheck source=lib/processes.sh
. "$SCRIPT_DIR/lib/processes.sh"
# shellcheck source=lib/nginx.sh
. "$SCRIPT_DIR/lib/nginx.sh"

# -- the database's content: migrations, streams, the first owner -------------------------------------------------
run_release() {
    step "Release: migrations (expand-only) and JetStream streams"
    if ((DRY_RUN)); then say "would run: deskbell release"; return; fi
    deskbell_as "$PREFIX/releases/$RELEASE" release
}

OWNER_PASSWORD="" SITE_KEY=""
bootstrap_owner() {
    [[ -z $SITE_KEY ]] || return 0 # an earlier run made the owner: never touched again
    step "Owner account"
    if ((DRY_RUN)); then say "would run: deskbell bootstrap --json (a company, its site and its owner)"; return; fi
    local out
    out=$(deskbell_as "$PREFIX/releases/$RELEASE" bootstrap --json --slug main --name "$COMPANY" \
        --owner-email "$OWNER_EMAIL" --site-name "Website")
    read -r SITE_KEY OWNER_PASSWORD < <("$PY" -c 'import json, sys
r = json.loads(sys.stdin.read()); print(r["site_key"], r["owner_password"] or "")' <<<"$out")
    [[ -n $OWNER_PASSWORD ]] || say "the company existed already: its owner's password is not shown again"
}

# -- the end -------------------------------------------------------------------------------------------------------
# Every check of `deskbell doctor`, the edge through PUBLIC_URL included; a failure is reported, not fatal (a
# new domain's DNS may not point here yet). On the machine itself, the self-signed certificate is trusted.
run_doctor() {
    step "Self-check: deskbell doctor"
    if ((DRY_RUN)); then say "would run: deskbell doctor"; return; fi
    local trust=()
    [[ $CERT != "$TLS_DIR"/* ]] || trust=("SSL_CERT_FILE=$CERT")
    env "${trust[@]}" /usr/local/bin/deskbell doctor 2>&1 | sed 's/^/    /' >&2 ||
        say "warning: some checks failed (above); Deskbell runs anyway. Run sudo deskbell doctor again later."
}

summary() {
    local first=$1 url=https://$SERVER_NAME
    step "Done"
    ((DRY_RUN)) && { say "(dry run: nothing was changed)"; return; }
    cat <<EOF

  Deskbell $RELEASE is running at $url
    console:  $url/console
EOF
    if [[ -n $OWNER_PASSWORD ]]; then
        cat <<EOF
    owner:    $OWNER_EMAIL
    password: $OWNER_PASSWORD    (shown this once: write it down, then change it)
EOF
    elif ((first)); then
        echo "    owner:    $OWNER_EMAIL (existing account: its password is not shown again)"
    fi
    cat <<EOF
    site key: $SITE_KEY
    widget:   <script src="$url/widget.js" data-site="$SITE_KEY" async></script>

  Check it:  sudo deskbell doctor
  Logs:      $(if ((SYSTEMD)); then echo "journalctl -u 'deskbell-*'"; else echo "$LOG_DIR/"; fi)
EOF
    if [[ $CERT == "$TLS_DIR"/* ]]; then
        echo "  TLS:       a self-signed certificate ($CERT): browsers warn until you use a real one."
        if [[ -n $DOMAIN && -n $EMAIL ]]; then
            echo "             For Let's Encrypt (the name must reach this machine on port 80), run:"
            echo "               apt-get install certbot && $(certbot_command) && $0"
        else
            echo "             With a public name: $0 --domain chat.example.com --email you@example.com --certbot"
        fi
    fi
    echo
}

main() {
    parse_args "$@"
    load_state
    if [[ $ACTION == list ]]; then
        [[ -z $OFFLINE ]] || { open_bundle; }
        CHECKOUT=$(cd "$SCRIPT_DIR/.." && pwd)
        choose_python
        os_packages
        return
    fi
    check_machine
    if [[ $ACTION == stop ]]; then stop_all; return; fi
    ((DRY_RUN)) && step "Dry run: nothing is changed"
    local upgrade=0
    [[ ! -e $PREFIX/current ]] || upgrade=1
    if ((upgrade)); then say "Deskbell is installed: upgrading in place"; fi

    open_bundle
    choose_python
    install_os_packages
    PY=$(command -v "python$PY_VERSION" || true)
    [[ -n $PY || $DRY_RUN == 1 ]] || die "python$PY_VERSION is missing"
    build_bundle
    choose_python # the bundle made here fixes the Python version too
    verify_bundle
    choose_server_name
    choose_owner

    create_user_and_folders
    install_release
    install_command
    write_env_file
    setup_postgres
    install_units
    ((upgrade)) || switch_current # nats-server runs from current: the first install needs it now
    start_nats
    run_release
    switch_current # after the migrations: if they fail, the running release stays current
    ((!upgrade || DRY_RUN)) || restart_nats_if_changed
    bootstrap_owner
    save_state
    start_or_roll "$upgrade"
    setup_nginx
    run_certbot
    prune_releases
    run_doctor
    summary $((!upgrade))
}

main "$@"
