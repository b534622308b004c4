# shellcheck shell=bash
# {{ cookiecutter.project }}: the iptables half of deploy/firewall/apply.sh, which sources this file.
#
# Each backend defines the same functions, called by apply.sh: default_files,
# backend_check, backend_save, backend_apply, backend_restore and their plan_*
# twins for --dry-run; and FILE_COUNT, FILES_HELP and WHAT for its messages.
# apply.sh provides die, warn, HERE, PROJECT and state_dir.
# shellcheck disable=SC2034,SC2154 # names this file sets for apply.sh, or uses from it

# ---------------------------------------------------------------- iptables
# iptables-restore replaces a whole table in one step, per IP family. The
# saved state is the filter table of each family (iptables-save -t filter); if
# IPv6 fails after IPv4 went in, IPv4 is put back as it was.
readonly FILE_COUNT=2
readonly FILES_HELP="FILE...: rules.v4 and rules.v6, in that order (default: deploy/firewall/iptables/rules.v4 rules.v6)"
readonly WHAT="iptables and ip6tables filter tables"

default_files() {
    files=("$HERE/iptables/rules.v4" "$HERE/iptables/rules.v6")
}

filter_only() {
    local tables
    tables=$(grep -E '^[*]' -- "$1" || true)
    if [[ $tables != '*filter' ]]; then
        die "$1: must hold the *filter table and no other (only that table is saved for a rollback)"
    fi
}

backend_check() {
    filter_only "$1"
    filter_only "$2"
    iptables-restore --test "$1" || die "check failed: $1 (nothing was changed)"
    ip6tables-restore --test "$2" || die "check failed: $2 (nothing was changed)"
}

backend_save() {
    # A filter table that does not exist yet is saved as empty ACCEPT chains,
    # which is what the kernel does without one.
    iptables-save -t filter >"$1/previous.v4" || die "iptables-save failed"
    ip6tables-save -t filter >"$1/previous.v6" || die "ip6tables-save failed"
    if ! iptables-restore --test "$1/previous.v4" || ! ip6tables-restore --test "$1/previous.v6"; then
        die "the loaded filter tables do not load back from iptables-save; not applying anything, as there could be no rollback"
    fi
}

backend_apply() {
    # On failure the caller restores both families from the saved state: that
    # undoes rules.v4 if rules.v6 is the one that failed.
    iptables-restore "$1" && ip6tables-restore "$2"
}

backend_restore() {
    local status=0
    iptables-restore "$1/previous.v4" || status=1
    ip6tables-restore "$1/previous.v6" || status=1
    return "$status"
}

plan_check() {
    printf '    iptables-restore --test %q\n    ip6tables-restore --test %q\n' "$1" "$2"
}

plan_save() {
    printf '    iptables-save -t filter > %q/previous.v4\n    ip6tables-save -t filter > %q/previous.v6\n' "$1" "$1"
}

plan_apply() {
    printf '    iptables-restore %q\n    ip6tables-restore %q  (if this fails, IPv4 goes back to the saved state)\n' "$1" "$2"
}

plan_restore() {
    printf '    iptables-restore %q/previous.v4\n    ip6tables-restore %q/previous.v6\n' "$1" "$1"
}
