#!/usr/bin/env bash
# {{ cookiecutter.project }}: whitelist of inbound traffic with ufw.
#
# Sets the defaults (deny incoming, deny routed, allow outgoing) and adds:
#   ssh {{ cookiecutter.ssh_port }}/tcp with "ufw limit" (ufw denies a source after 6 connections in 30 s),
#   80/tcp and 443/tcp for nginx,
#   the internal service port only from the trusted clients (none if there are none).
# Running it again changes nothing: ufw skips rules it already has.
# It does not enable ufw; check with "ufw show added", then run "ufw enable".
#
# ICMP and ICMPv6 (neighbour discovery, packet-too-big, errors, ping) are
# allowed by ufw's own /etc/ufw/before.rules and before6.rules. ufw filters
# IPv6 only when /etc/default/ufw says IPV6=yes; this script checks that.
# Ports that docker publishes do not pass through these rules (see README.md).
{%- if cookiecutter.database == "postgresql" %}
#
# With --database-host (ufw-database-rules.sh runs it so): the PostgreSQL
# database host's whitelist instead: ssh as above, and 5432/tcp only from the
# internal service hosts, the trusted clients when the project was generated
# (edit DATABASE_CLIENTS_V4/_V6); no 80, 443 or internal port.
{%- endif %}
set -euo pipefail

readonly SSH_PORT={{ cookiecutter.ssh_port }}
readonly INTERNAL_PORT={{ cookiecutter.internal_port }}
readonly TRUSTED_V4=({% for client in cookiecutter.__trusted_v4.split() %}{{ ' ' if not loop.first }}'{{ client }}'{% endfor %})
readonly TRUSTED_V6=({% for client in cookiecutter.__trusted_v6.split() %}{{ ' ' if not loop.first }}'{{ client }}'{% endfor %})
{%- if cookiecutter.database == "postgresql" %}
readonly DATABASE_PORT=5432
# The internal service hosts, which alone may reach PostgreSQL on the database host.
readonly DATABASE_CLIENTS_V4=({% for client in cookiecutter.__trusted_v4.split() %}{{ ' ' if not loop.first }}'{{ client }}'{% endfor %})
readonly DATABASE_CLIENTS_V6=({% for client in cookiecutter.__trusted_v6.split() %}{{ ' ' if not loop.first }}'{{ client }}'{% endfor %})
{%- endif %}
UFW_DEFAULTS_FILE=${UFW_DEFAULTS_FILE:-/etc/default/ufw}

usage() {
    cat <<USAGE
Usage: ${0##*/} [--dry-run]{% if cookiecutter.database == "postgresql" %} [--database-host]{% endif %} [--help]

Add the {{ cookiecutter.project }} whitelist to ufw: default deny incoming and routed,
allow outgoing, rate-limited ssh on port ${SSH_PORT}, 80/tcp and 443/tcp, and the
internal port ${INTERNAL_PORT} from the trusted clients only. Needs root.

  -n, --dry-run  print the ufw commands instead of running them (no root needed)
{%- if cookiecutter.database == "postgresql" %}
  --database-host
                 the PostgreSQL database host's whitelist instead: ssh, and
                 ${DATABASE_PORT}/tcp only from the internal service hosts
{%- endif %}
  -h, --help     show this help and exit
USAGE
}

die() {
    printf '%s: error: %s\n' "${0##*/}" "$1" >&2
    exit 1
}

warn() {
    printf '%s: warning: %s\n' "${0##*/}" "$1" >&2
}

# Print one argument so that a shell reads it back unchanged.
quote() {
    if [[ $1 =~ ^[A-Za-z0-9_./:,=+@-]+$ ]]; then
        printf '%s' "$1"
    else
        printf "'%s'" "${1//\'/\'\\\'\'}"
    fi
}

dry_run=0
# Which host's whitelist: "app" (nginx and the internal service){% if cookiecutter.database == "postgresql" %} or "database" (--database-host){% endif %}.
host=app

run() {
    local line="" arg
    for arg in "$@"; do
        line+="${line:+ }$(quote "$arg")"
    done
    if ((dry_run)); then
        printf '%s\n' "$line"
    else
        printf '+ %s\n' "$line"
        "$@"
    fi
}

while (($# > 0)); do
    case $1 in
        -n | --dry-run) dry_run=1 ;;
{%- if cookiecutter.database == "postgresql" %}
        --database-host) host=database ;;
{%- endif %}
        -h | --help)
            usage
            exit 0
            ;;
        *)
            printf '%s: error: unknown argument: %s\n' "${0##*/}" "$1" >&2
            usage >&2
            exit 2
            ;;
    esac
    shift
done

if ((!dry_run)) && ((EUID != 0)); then
    die "must run as root to change the firewall (or use --dry-run to only print the commands)"
fi
if ((!dry_run)) && ! command -v ufw >/dev/null 2>&1; then
    die "ufw is not installed (apt-get install ufw)"
fi

# The IPv6 clients this host's rules let in: ufw must filter IPv6 for them.
v6_clients=("${TRUSTED_V6[@]}")
{%- if cookiecutter.database == "postgresql" %}
if [[ $host == database ]]; then
    v6_clients=("${DATABASE_CLIENTS_V6[@]}")
fi
{%- endif %}
ipv6=no
if [[ -r $UFW_DEFAULTS_FILE ]] && grep -Eq '^[[:space:]]*IPV6=("?)yes\1[[:space:]]*$' "$UFW_DEFAULTS_FILE"; then
    ipv6=yes
fi
if [[ $ipv6 != yes ]]; then
    warn "IPV6=yes not found in $UFW_DEFAULTS_FILE: ufw will not filter IPv6 traffic"
    if [[ -n ${v6_clients[*]-} ]] && ((!dry_run)); then
        die "IPv6 clients need IPV6=yes in $UFW_DEFAULTS_FILE; set it and run again"
    fi
fi

run ufw default deny incoming
run ufw default deny routed
run ufw default allow outgoing
run ufw limit "${SSH_PORT}/tcp" comment 'ssh, rate limited per source'
if [[ $host == app ]]; then
    run ufw allow 80/tcp comment 'http, served by nginx'
    run ufw allow 443/tcp comment 'https, served by nginx'
    for client in "${TRUSTED_V4[@]}" "${TRUSTED_V6[@]}"; do
        run ufw allow proto tcp from "$client" to any port "$INTERNAL_PORT" comment 'internal service, trusted client'
    done
fi
{%- if cookiecutter.database == "postgresql" %}
if [[ $host == database ]]; then
    for client in "${DATABASE_CLIENTS_V4[@]}" "${DATABASE_CLIENTS_V6[@]}"; do
        run ufw allow proto tcp from "$client" to any port "$DATABASE_PORT" comment 'PostgreSQL, internal service host'
    done
fi
{%- endif %}

if ((!dry_run)); then
    # Not "ufw status | grep -q": with pipefail, grep quitting early could fail the pipe.
    status=$(ufw status)
    if [[ $status != *"Status: active"* ]]; then
        printf 'ufw is not active yet: check the rules with "ufw show added", then run "ufw enable".\n'
    fi
fi
