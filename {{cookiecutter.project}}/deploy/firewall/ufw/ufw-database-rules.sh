#!/usr/bin/env bash
# {{ cookiecutter.project }}: whitelist of inbound traffic with ufw on the PostgreSQL database
# host. For that host alone: the API and internal service hosts run
# ufw-rules.sh instead.
#
# Sets the defaults (deny incoming, deny routed, allow outgoing) and adds:
#   ssh {{ cookiecutter.ssh_port }}/tcp with "ufw limit" (ufw denies a source after 6 connections in 30 s),
#   PostgreSQL 5432/tcp only from the internal service hosts: the project's
#   trusted clients when it was generated (none if there are none; edit DATABASE_CLIENTS_V4/_V6).
# Running it again changes nothing: ufw skips rules it already has.
# It does not enable ufw; deploy/firewall/apply.sh does, with a rollback timer:
#   deploy/firewall/apply.sh --confirm-within 120 deploy/firewall/ufw/ufw-database-rules.sh
#
# ICMP and ICMPv6 are allowed by ufw's own before.rules and before6.rules.
# ufw filters IPv6 only when /etc/default/ufw says IPV6=yes; this script checks that.
set -euo pipefail

readonly SSH_PORT={{ cookiecutter.ssh_port }}
readonly DATABASE_PORT=5432
readonly DATABASE_CLIENTS_V4=({% for client in cookiecutter.__trusted_v4.split() %}{{ ' ' if not loop.first }}'{{ client }}'{% endfor %})
readonly DATABASE_CLIENTS_V6=({% for client in cookiecutter.__trusted_v6.split() %}{{ ' ' if not loop.first }}'{{ client }}'{% endfor %})
UFW_DEFAULTS_FILE=${UFW_DEFAULTS_FILE:-/etc/default/ufw}

usage() {
    cat <<USAGE
Usage: ${0##*/} [--dry-run] [--help]

Add the {{ cookiecutter.project }} database host's whitelist to ufw: default deny incoming
and routed, allow outgoing, rate-limited ssh on port ${SSH_PORT}, and PostgreSQL
(${DATABASE_PORT}/tcp) from the internal service hosts only. Needs root.

  -n, --dry-run  print the ufw commands instead of running them (no root needed)
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

ipv6=no
if [[ -r $UFW_DEFAULTS_FILE ]] && grep -Eq '^[[:space:]]*IPV6=("?)yes\1[[:space:]]*$' "$UFW_DEFAULTS_FILE"; then
    ipv6=yes
fi
if [[ $ipv6 != yes ]]; then
    warn "IPV6=yes not found in $UFW_DEFAULTS_FILE: ufw will not filter IPv6 traffic"
    if [[ -n ${DATABASE_CLIENTS_V6[*]-} ]] && ((!dry_run)); then
        die "IPv6 internal service hosts need IPV6=yes in $UFW_DEFAULTS_FILE; set it and run again"
    fi
fi

run ufw default deny incoming
run ufw default deny routed
run ufw default allow outgoing
run ufw limit "${SSH_PORT}/tcp" comment 'ssh, rate limited per source'
for client in "${DATABASE_CLIENTS_V4[@]}" "${DATABASE_CLIENTS_V6[@]}"; do
    run ufw allow proto tcp from "$client" to any port "$DATABASE_PORT" comment 'PostgreSQL, internal service host'
done

if ((!dry_run)); then
    # Not "ufw status | grep -q": with pipefail, grep quitting early could fail the pipe.
    status=$(ufw status)
    if [[ $status != *"Status: active"* ]]; then
        printf 'ufw is not active yet: check the rules with "ufw show added", then run "ufw enable".\n'
    fi
fi
