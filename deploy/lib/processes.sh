# shellcheck shell=bash
# Sourced by deploy/install.sh: Deskbell's processes as systemd units, or, where systemd is not running, as
# background processes with pid files that run the units' own command lines (docs/install.md, "Without systemd").
# Uses install.sh's settings and its run/say/die/put_file.

web_ports() { seq "$FIRST_WEB_PORT" $((FIRST_WEB_PORT + WEB - 1)); }

install_units() {
    local unit changed=0
    for unit in deskbell.target deskbell-nats.service deskbell-web@.service deskbell-worker@.service; do
        ! put_file "$UNIT_DIR/$unit" 0644 root:root <"$SCRIPT_DIR/systemd/$unit" || changed=1
    done
    ((!changed || !SYSTEMD)) || run systemctl daemon-reload
    ((!SYSTEMD)) || run systemctl enable --quiet deskbell.target
}

# The unit file behind a process name: nats, web@8001, worker@1.
unit_file() {
    case $1 in
        nats) echo "$UNIT_DIR/deskbell-nats.service" ;;
        *@*) echo "$UNIT_DIR/deskbell-${1%@*}@.service" ;;
    esac
}

# Without systemd: start a process as its unit would (ExecStart, Environment, EnvironmentFile, User),
# in the background, its output in LOG_DIR. One command line in one place: the unit.
background_start() {
    local name=$1 file instance command environment
    file=$(unit_file "$name")
    instance=${name#*@}
    command=$(sed -n 's/^ExecStart=//p' "$file")
    command=${command//%i/$instance}
    command=${command//\$\$/\$} # systemd's $$ is the shell's $
    environment=$(sed -n 's/^Environment=//p' "$file")
    environment=${environment//%i/$instance}
    mkdir -p "$LOG_DIR" "$PID_DIR"
    (
        # shellcheck disable=SC1090
        if grep -q '^EnvironmentFile=' "$file"; then set -a; . "$ENV_FILE"; set +a; fi
        # shellcheck disable=SC2086,SC2163 # several NAME=VALUE words
        [[ -z $environment ]] || export $environment
        cd "$DATA" || exit 1
        exec setsid setpriv --reuid="$APP_USER" --regid="$APP_USER" --init-groups env HOME="$DATA" sh -c "exec $command"
    ) >>"$LOG_DIR/$name.log" 2>&1 </dev/null &
    echo $! >"$PID_DIR/$name.pid"
}

background_pid() {
    local pid
    pid=$(cat "$PID_DIR/$1.pid" 2>/dev/null) || return 1
    kill -0 "$pid" 2>/dev/null && echo "$pid"
}

# SIGTERM, then as long as the unit's TimeoutStopSec (30 s) before SIGKILL, as systemd does.
background_stop() {
    local pid _
    pid=$(background_pid "$1") || return 0
    kill -TERM "$pid"
    for _ in $(seq 60); do kill -0 "$pid" 2>/dev/null || break; sleep 0.5; done
    ! kill -0 "$pid" 2>/dev/null || { say "$1 did not stop in 30 s: SIGKILL"; kill -KILL "$pid"; }
    rm -f "$PID_DIR/$1.pid"
}

is_running() {
    if ((SYSTEMD)); then systemctl is-active --quiet "$(unit_name "$1")"; else background_pid "$1" >/dev/null; fi
}

unit_name() { case $1 in nats) echo deskbell-nats.service ;; *) echo "deskbell-$1.service" ;; esac; }

start_process() {
    if ((SYSTEMD)); then
        run systemctl enable --quiet --now "$(unit_name "$1")"
    elif ((DRY_RUN)); then
        say "would start $1 in the background"
    elif ! is_running "$1"; then
        background_start "$1"
    fi
}

stop_process() {
    if ((SYSTEMD)); then
        run systemctl disable --quiet --now "$(unit_name "$1")"
    elif ((DRY_RUN)); then
        say "would stop $1"
    else
        background_stop "$1"
    fi
}

restart_process() {
    if ((SYSTEMD)); then
        run systemctl restart "$(unit_name "$1")"
    elif ((DRY_RUN)); then
        say "would restart $1"
    else
        background_stop "$1"
        background_start "$1"
    fi
}

wait_port() {
    local _
    for _ in $(seq 60); do { exec 3<>"/dev/tcp/127.0.0.1/$1"; } 2>/dev/null && { exec 3<&-; return 0; }; sleep 0.5; done
    return 1
}

start_nats() {
    step "nats-server (JetStream in $DATA/nats)"
    start_process nats
    ((DRY_RUN)) && return
    wait_port "$NATS_PORT" || die "nats-server does not listen on $NATS_PORT ($(log_hint nats))"
    say "listening on 127.0.0.1:$NATS_PORT"
}

# An upgrade restarts nats-server only when the new release brings another binary: meanwhile every web process
# answers 503 and every worker reconnects (nothing is lost: whatever had no ack is sent again).
restart_nats_if_changed() {
    local pid running new
    if ((SYSTEMD)); then pid=$(systemctl show -p MainPID --value deskbell-nats.service); else pid=$(background_pid nats || true); fi
    [[ -n $pid && $pid != 0 && -e /proc/$pid/exe ]] || return 0
    running=$(sha256sum </proc/"$pid"/exe)
    new=$(sha256sum <"$PREFIX/releases/$RELEASE/venv/bin/nats-server")
    [[ $running != "$new" ]] || return 0
    say "the new release brings another nats-server: restarting it"
    restart_process nats
    ((DRY_RUN)) || wait_port "$NATS_PORT" || die "nats-server does not listen on $NATS_PORT ($(log_hint nats))"
}

log_hint() {
    if ((SYSTEMD)); then echo "journalctl -u $(unit_name "$1")"; else echo "$LOG_DIR/$1.log"; fi
}

# First run: start everything. Later runs: one process at a time, each web process ready before the next goes
# down, so nginx always has one to send to and no visitor notices (docs/operations.md, "Restarts and upgrades").
start_or_roll() {
    local upgrade=$1 port n
    step "Processes: $WEB web (ports $FIRST_WEB_PORT-$((FIRST_WEB_PORT + WEB - 1))), $WORKERS worker(s)"
    for port in $(web_ports); do
        if [[ $upgrade == 1 ]] && is_running "web@$port"; then restart_process "web@$port"; else start_process "web@$port"; fi
        ((DRY_RUN)) && continue
        "$SCRIPT_DIR/wait-ready" "$port" 90 --strict ||
            die "web@$port is not ready; the others still run the previous release ($(log_hint "web@$port"))"
        say "web@$port ready"
    done
    for n in $(seq "$WORKERS"); do
        if [[ $upgrade == 1 ]] && is_running "worker@$n"; then restart_process "worker@$n"; else start_process "worker@$n"; fi
        ((DRY_RUN)) && continue
        sleep 2
        is_running "worker@$n" || die "worker@$n stopped ($(log_hint "worker@$n"))"
        say "worker@$n running"
    done
    scale_down
}

# Copies above --web / --workers from an earlier run: stopped, and (with systemd) disabled.
scale_down() {
    local unit name
    if ((SYSTEMD)); then
        while read -r unit _; do
            name=${unit#deskbell-}
            name=${name%.service}
            wanted "$name" || stop_process "$name"
        done < <(systemctl list-units --all --plain --no-legend 'deskbell-web@*' 'deskbell-worker@*')
    else
        for unit in "$PID_DIR"/web@*.pid "$PID_DIR"/worker@*.pid; do
            [[ -e $unit ]] || continue
            name=$(basename "$unit" .pid)
            wanted "$name" || stop_process "$name"
        done
    fi
}

wanted() {
    case $1 in
        web@*) ((${1#web@} >= FIRST_WEB_PORT && ${1#web@} < FIRST_WEB_PORT + WEB)) ;;
        worker@*) ((${1#worker@} >= 1 && ${1#worker@} <= WORKERS)) ;;
    esac
}

stop_all() {
    step "Stopping Deskbell"
    if ((SYSTEMD)); then
        run systemctl stop deskbell.target 'deskbell-web@*' 'deskbell-worker@*' deskbell-nats.service
        return
    fi
    local pidfile
    for pidfile in "$PID_DIR"/web@*.pid "$PID_DIR"/worker@*.pid "$PID_DIR"/nats.pid; do
        [[ -e $pidfile ]] && stop_process "$(basename "$pidfile" .pid)"
    done
    # What this script started itself, in the absence of systemd.
    [[ ! -f /run/nginx.pid ]] || run nginx -s quit || true
    local version cluster _port status _rest
    while read -r version cluster _port status _rest; do
        [[ $status != online* ]] || run pg_ctlcluster "$version" "$cluster" stop
    done < <(pg_lsclusters -h 2>/dev/null)
    say "stopped"
}
