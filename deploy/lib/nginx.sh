# shellcheck shell=bash
# Sourced by deploy/install.sh: nginx in front of the web processes, with TLS from Let's Encrypt or a
# self-signed certificate (docs/install.md, "TLS"). Uses install.sh's settings and its run/say/die/put_file.

CERT="" CERT_KEY=""
choose_certificate() {
    local live=/etc/letsencrypt/live/$SERVER_NAME
    if [[ -f $live/fullchain.pem ]]; then CERT=$live/fullchain.pem CERT_KEY=$live/privkey.pem; return; fi
    CERT=$TLS_DIR/deskbell.crt CERT_KEY=$TLS_DIR/deskbell.key
    # Made once per name; a new --domain gets a new one.
    if [[ -f $CERT ]] && openssl x509 -in "$CERT" -noout -ext subjectAltName 2>/dev/null | grep -qF "$SERVER_NAME"; then
        return
    fi
    # The chosen name, this machine's own, and loopback (for checks on the machine itself).
    local names=() host
    host=$(hostname -f 2>/dev/null || cat /proc/sys/kernel/hostname)
    if [[ $SERVER_NAME =~ ^[0-9.]+$|: ]]; then names+=("IP:$SERVER_NAME"); else names+=("DNS:$SERVER_NAME"); fi
    [[ -z $host || $host == "$SERVER_NAME" || $host == localhost ]] || names+=("DNS:$host")
    [[ $SERVER_NAME == localhost ]] || names+=("DNS:localhost")
    [[ $SERVER_NAME == 127.0.0.1 ]] || names+=("IP:127.0.0.1")
    local san
    san=$(IFS=,; echo "${names[*]}")
    run openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 825 -subj "/CN=$SERVER_NAME" \
        -addext "subjectAltName=$san" -keyout "$CERT_KEY" -out "$CERT"
    run chmod 0600 "$CERT_KEY"
    say "self-signed certificate for $san"
}

render_site() {
    local site upstream="" port listen80="" listen443=""
    for port in $(web_ports); do upstream+="    server 127.0.0.1:$port max_fails=1 fail_timeout=5s;"$'\n'; done
    # IPv6 listeners only where the kernel has IPv6, or nginx refuses to start.
    if [[ -e /proc/net/if_inet6 ]]; then listen80="    listen [::]:80;" listen443="    listen [::]:443 ssl http2;"; fi
    site=$(<"$SCRIPT_DIR/nginx/deskbell.conf")
    site=${site//@UPSTREAM_SERVERS@/${upstream%$'\n'}}
    site=${site//@LISTEN6_80@/$listen80}
    site=${site//@LISTEN6_443@/$listen443}
    site=${site//@SERVER_NAME@/$SERVER_NAME}
    site=${site//@CERTIFICATE@/$CERT}
    site=${site//@CERTIFICATE_KEY@/$CERT_KEY}
    site=${site//@READ_TIMEOUT@/$READ_TIMEOUT}
    printf '%s\n' "$site"
}

setup_nginx() {
    step "nginx: https://$SERVER_NAME"
    choose_certificate
    run install -d -m 0755 "$ACME_ROOT"
    render_site | put_file "$SITE" 0644 root:root || true
    run ln -sfn "$SITE" /etc/nginx/sites-enabled/deskbell
    # Debian's welcome page would answer plain HTTP by address instead of our redirect.
    if [[ $(readlink /etc/nginx/sites-enabled/default 2>/dev/null) == */sites-available/default ]]; then
        run rm /etc/nginx/sites-enabled/default
    fi
    ((DRY_RUN)) || nginx -t -q || die "nginx refuses its configuration (nginx -t, above)"
    if ((SYSTEMD)); then
        run systemctl enable --quiet nginx
        run systemctl reload-or-restart nginx
    elif [[ -f /run/nginx.pid ]] && kill -0 "$(cat /run/nginx.pid)" 2>/dev/null; then
        run nginx -s reload
    else
        run nginx
    fi
}

certbot_command() {
    echo "certbot certonly --webroot -w $ACME_ROOT -d $DOMAIN -m $EMAIL --agree-tos -n" \
        "--deploy-hook 'systemctl reload nginx'"
}

run_certbot() {
    ((CERTBOT)) || return 0
    step "Let's Encrypt certificate for $DOMAIN"
    run sh -c "$(certbot_command)"
    choose_certificate
    setup_nginx
}
