# shellcheck shell=bash
# {{ cookiecutter.project }}: the ufw half of deploy/firewall/apply.sh, which sources this file.
#
# Each backend defines the same functions, called by apply.sh: default_files,
# backend_check, backend_save, backend_apply, backend_restore and their plan_*
# twins for --dry-run; and FILE_COUNT, FILES_HELP and WHAT for its messages.
# apply.sh provides die, warn, HERE, PROJECT and state_dir.
# shellcheck disable=SC2034,SC2154 # names this file sets for apply.sh, or uses from it

# ---------------------------------------------------------------- ufw
# ufw has no transactions: with ufw active, every "ufw allow" changes the
# running firewall at once, and "ufw reload" stops ufw (everything is let in)
# and starts it again. The best that can be done: run ufw-rules.sh against a
# private copy of ufw's files (own mount namespace, ufw marked disabled there,
# so nothing live changes rule by rule), copy the finished files into place,
# then load them with one "ufw reload" (or "ufw enable"). The saved state is
# a copy of the files ufw changes, and whether ufw was active.
readonly FILE_COUNT=1
readonly FILES_HELP="FILE: a script of ufw commands like deploy/firewall/ufw/ufw-rules.sh (the default)"
readonly WHAT="ufw"
# Saved name -> the file ufw keeps it in.
readonly UFW_SAVED=(user.rules user6.rules ufw.conf default-ufw)

default_files() {
    files=("$HERE/ufw/ufw-rules.sh")
}

ufw_file() {
    if [[ $1 == default-ufw ]]; then
        printf '/etc/default/ufw\n'
    else
        printf '/etc/ufw/%s\n' "$1"
    fi
}

need_ufw() {
    command -v ufw >/dev/null || die "ufw is not installed (apt-get install ufw)"
}

ufw_active() {
    local status
    status=$(ufw status) || die "ufw status failed"
    [[ $status == "Status: active"* ]]
}

# Make ufw load its files: a reload if it runs, else an enable.
ufw_load() {
    if ufw_active; then
        # A reload does nothing while ufw.conf says ENABLED=no.
        if ! grep -Eq '^[[:space:]]*ENABLED=("?)yes\1[[:space:]]*$' /etc/ufw/ufw.conf; then
            ufw --force enable
        fi
        ufw reload
    else
        ufw --force enable
    fi
}

backend_check() {
    need_ufw
    bash -n -- "$1" || die "check failed: $1 is not valid bash (nothing was changed)"
    # The script runs for real, but each of its ufw commands becomes
    # "ufw --dry-run ...": ufw parses and checks it and changes nothing.
    (
        # shellcheck disable=SC2317 # called by the child bash, via export -f
        ufw() { command ufw --dry-run "$@"; }
        export -f ufw
        bash -- "$1" >/dev/null
    ) || die "check failed: $1 (nothing was changed)"
}

backend_save() {
    local name
    need_ufw
    for name in "${UFW_SAVED[@]}"; do
        cp -p -- "$(ufw_file "$name")" "$1/$name" || die "cannot save $(ufw_file "$name")"
    done
    if ufw_active; then
        printf 'active\n' >"$1/ufw-state"
    else
        printf 'inactive\n' >"$1/ufw-state"
    fi
}

backend_apply() {
    local stage=$state_dir/stage name
    rm -rf -- "$stage"
    mkdir -m 0700 -- "$stage"
    cp -a /etc/ufw "$stage/ufw"
    cp -p /etc/default/ufw "$stage/default-ufw"
    # Marked disabled, ufw only edits its files and leaves the live rules alone.
    sed -i 's/^[[:space:]]*ENABLED=.*/ENABLED=no/' "$stage/ufw/ufw.conf"
    # shellcheck disable=SC2016 # $1 and $2 are the inner bash's arguments
    if ! unshare --mount --propagation private -- bash -c \
        'mount --bind "$1/ufw" /etc/ufw && mount --bind "$1/default-ufw" /etc/default/ufw && exec bash -- "$2"' \
        stage "$stage" "$1" >"$stage/log" 2>&1; then
        cat -- "$stage/log" >&2
        warn "$1 failed on a copy of ufw's files; the running firewall was not touched"
        return 1
    fi
    # cp writes into the existing files, keeping their owner and mode.
    for name in user.rules user6.rules; do
        cp -- "$stage/ufw/$name" "/etc/ufw/$name" || return 1
    done
    cp -- "$stage/default-ufw" /etc/default/ufw || return 1
    mv -f -- "$stage/log" "$state_dir/ufw-rules.log"
    rm -rf -- "$stage"
    ufw_load
}

backend_restore() {
    local name status=0
    for name in "${UFW_SAVED[@]}"; do
        cp -- "$1/$name" "$(ufw_file "$name")" || status=1
    done
    if [[ $(<"$1/ufw-state") == active ]]; then
        ufw_load || status=1
    else
        ufw --force disable || status=1
    fi
    # enable and disable rewrite ENABLED in ufw.conf: put the saved one back.
    cp -- "$1/ufw.conf" /etc/ufw/ufw.conf || status=1
    return "$status"
}

plan_check() {
    printf '    bash -n %q\n    %q, with every ufw command run as "ufw --dry-run ..."\n' "$1" "$1"
}

plan_save() {
    printf '    copy /etc/ufw/user.rules, user6.rules, ufw.conf and /etc/default/ufw to %q, note whether ufw is active\n' "$1"
}

plan_apply() {
    printf '    %q against a copy of /etc/ufw and /etc/default/ufw (unshare --mount; ufw marked disabled there)\n' "$1"
    printf '    copy the resulting user.rules, user6.rules and /etc/default/ufw into place\n'
    printf '    ufw reload (if ufw is active), else ufw --force enable\n'
}

plan_restore() {
    printf '    copy the saved files from %q back, then ufw reload or enable (it was active) or ufw --force disable\n' "$1"
}
