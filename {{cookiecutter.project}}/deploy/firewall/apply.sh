#!/usr/bin/env bash
# {{ cookiecutter.project }}: check and load the firewall rules ({{ cookiecutter.firewall }}) without locking yourself out.
#
#   apply.sh --check                 check only; the running firewall stays as it is
#   apply.sh --confirm-within 120    load, and undo it after 120 s unless confirmed
#   apply.sh --confirm               (from a NEW ssh session) keep the new rules
#   apply.sh                         check, then load, without a safety net
#
# Like iptables-apply: the current state is saved first and a detached timer
# (setsid + nohup, so it outlives the ssh session that started it) is armed
# BEFORE the new rules go in. If they cut you off, nobody can run --confirm,
# and the timer puts the saved state back.
set -euo pipefail

# Root runs this: a fixed PATH, and tool output in English (it is parsed).
export PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin
export LC_ALL=C

readonly PROJECT='{{ cookiecutter.project }}'
SELF=$(readlink -f -- "${BASH_SOURCE[0]}")
readonly SELF
HERE=$(dirname -- "$SELF")
readonly HERE
readonly DEFAULT_STATE_DIR="/run/$PROJECT-firewall"
readonly MAX_SECONDS=86400
{%- if cookiecutter.firewall == "nftables" %}

# ---------------------------------------------------------------- nftables
# The rules file replaces one table and nothing else, in one nft transaction.
# The saved state is that table's listing (or the fact that there was none),
# so a rollback touches no other table either.
readonly TABLE='{{ cookiecutter.__package }}_fw'
readonly FILE_COUNT=1
readonly FILES_HELP="FILE: an nft file for table inet $TABLE (default: deploy/firewall/nftables/$PROJECT.nft)"
readonly WHAT="nftables table inet $TABLE"

default_files() {
    files=("$HERE/nftables/$PROJECT.nft")
}

backend_check() {
    # The rollback restores this table only; a flush would also have deleted
    # the tables of docker, fail2ban and ufw.
    if grep -Eq '^[[:space:]]*flush[[:space:]]+ruleset' -- "$1"; then
        die "$1: 'flush ruleset' would delete every other table too (docker, fail2ban, ufw); not loading it"
    fi
    nft -c -f "$1" || die "check failed: $1 (nothing was changed)"
}

table_exists() {
    local tables
    tables=$(nft list tables inet) || die "nft list tables failed"
    [[ $'\n'$tables$'\n' == *$'\n'"table inet $TABLE"$'\n'* ]]
}

backend_save() {
    # Create-then-delete removes the table whether or not it exists (nft 1.0.6
    # has no "destroy"); the listing, if any, then defines it again.
    printf 'table inet %s {}\ndelete table inet %s\n' "$TABLE" "$TABLE" >"$1/restore.nft"
    if table_exists; then
        nft list table inet "$TABLE" >>"$1/restore.nft" || die "nft list table inet $TABLE failed"
    fi
    nft -c -f "$1/restore.nft" ||
        die "the loaded table inet $TABLE does not load back from its own listing; not applying anything, as there could be no rollback"
}

backend_apply() {
    nft -f "$1"
}

backend_restore() {
    nft -f "$1/restore.nft"
}

plan_check() {
    printf '    nft -c -f %q\n' "$1"
}

plan_save() {
    printf '    nft list table inet %s > %q/restore.nft  (if the table is absent, a rollback deletes it)\n' "$TABLE" "$1"
}

plan_apply() {
    printf '    nft -f %q  (one transaction)\n' "$1"
}

plan_restore() {
    printf '    nft -f %q/restore.nft\n' "$1"
}
{%- elif cookiecutter.firewall == "iptables" %}

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
{%- elif cookiecutter.firewall == "ufw" %}

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
{%- endif %}

# ---------------------------------------------------------------- common

usage() {
    cat <<USAGE
Usage: ${0##*/} [--check | --confirm-within SECONDS | --confirm | --rollback]
       [--state-dir DIR] [--dry-run] [FILE...]

Check and load the $PROJECT firewall rules ($WHAT).

  (no mode)                 check the rules, then load them
  --check                   only check the rules; the running firewall is not changed
  --confirm-within SECONDS  save the current state, arm a rollback timer, load the
                            rules; the timer restores the saved state after SECONDS
                            (1-$MAX_SECONDS) unless --confirm runs first
  --confirm                 keep the rules: cancel the pending rollback. Run it from
                            a NEW ssh session, which proves that ssh still gets through
  --rollback                restore the saved state now (only while a change is pending)
  --state-dir DIR           saved state, lock, pending marker and timer.pid
                            (default $DEFAULT_STATE_DIR, mode 0700)
  -n, --dry-run             print what would be done; changes nothing, needs no root
  -h, --help                show this help and exit

$FILES_HELP
Everything but --help and --dry-run needs root. Exit status: 0 done,
1 failed or refused, 2 bad arguments. "--confirm" with nothing pending exits 0,
but 1 when it is too late (the timer has already restored the saved state).
USAGE
}

die() {
    printf '%s: error: %s\n' "${0##*/}" "$1" >&2
    exit 1
}

usage_error() {
    printf '%s: error: %s (see --help)\n' "${0##*/}" "$1" >&2
    exit 2
}

warn() {
    printf '%s: warning: %s\n' "${0##*/}" "$1" >&2
}

say() {
    printf '%s: %s\n' "${0##*/}" "$1"
}

# The timer's messages also go to the journal, where an operator looks first.
log() {
    printf '%s %s\n' "$(date '+%F %T')" "$1" >&2
    if command -v logger >/dev/null; then
        logger -t "$PROJECT-firewall" -- "$1" || true
    fi
}

count() {
    printf '%s\n' "$#"
}

mode=apply
mode_option=""
seconds=""
timer_token=""
state_dir=$DEFAULT_STATE_DIR
dry_run=0
files=()

set_mode() {
    if [[ -n $mode_option && $mode_option != "$1" ]]; then
        usage_error "$mode_option and $1 cannot be combined"
    fi
    mode_option=$1
    mode=$2
}

while (($# > 0)); do
    case $1 in
        --check) set_mode "$1" check ;;
        --confirm) set_mode "$1" confirm ;;
        --rollback) set_mode "$1" rollback ;;
        --confirm-within=*)
            set_mode --confirm-within confirm-within
            seconds=${1#*=}
            ;;
        --confirm-within)
            set_mode "$1" confirm-within
            (($# > 1)) || usage_error "--confirm-within needs a number of seconds"
            seconds=$2
            shift
            ;;
        --state-dir=*) state_dir=${1#*=} ;;
        --state-dir)
            (($# > 1)) || usage_error "--state-dir needs a directory"
            state_dir=$2
            shift
            ;;
        --timer)
            # Internal: the detached rollback timer that --confirm-within starts.
            set_mode "$1" timer
            (($# > 2)) || usage_error "--timer needs SECONDS and TOKEN"
            seconds=$2
            timer_token=$3
            shift 2
            ;;
        -n | --dry-run) dry_run=1 ;;
        -h | --help)
            usage
            exit 0
            ;;
        --)
            shift
            files+=("$@")
            break
            ;;
        -*) usage_error "unknown option: $1" ;;
        *) files+=("$1") ;;
    esac
    shift
done

if [[ $mode == confirm-within || $mode == timer ]]; then
    if ! [[ $seconds =~ ^[0-9]{1,6}$ ]] || ((10#$seconds < 1 || 10#$seconds > MAX_SECONDS)); then
        usage_error "--confirm-within wants whole seconds from 1 to $MAX_SECONDS, not '$seconds'"
    fi
    seconds=$((10#$seconds))
fi
if [[ $state_dir != /* ]]; then
    usage_error "--state-dir needs an absolute path, not '$state_dir'"
fi
state_dir=${state_dir%/}
readonly pending_file=$state_dir/pending
readonly saved_dir=$state_dir/previous
case $mode in
    confirm | rollback | timer)
        if (($(count "${files[@]}") > 0)); then
            usage_error "$mode_option takes no files"
        fi
        ;;
    *)
        if (($(count "${files[@]}") == 0)); then
            default_files
        fi
        if (($(count "${files[@]}") != FILE_COUNT)); then
            usage_error "wrong number of files; $FILES_HELP"
        fi
        for file in "${files[@]}"; do
            [[ -f $file && -r $file ]] || die "no such readable file: $file"
        done
        ;;
esac

show_plan() {
    printf 'Dry run: nothing is changed. %s %s would:\n' "${0##*/}" "${mode_option:-(apply)}"
    case $mode in
        check)
            printf '  check the rules:\n'
            plan_check "${files[@]}"
            ;;
        apply | confirm-within)
            printf '  check the rules:\n'
            plan_check "${files[@]}"
            printf '  save the current state:\n'
            plan_save "$saved_dir"
            if [[ $mode == confirm-within ]]; then
                printf '  arm a detached rollback timer (setsid nohup) that restores it in %s s unless --confirm runs first\n' "$seconds"
            fi
            printf '  load the rules (on failure, restore the saved state at once):\n'
            plan_apply "${files[@]}"
            ;;
        confirm)
            printf '  stop the rollback timer recorded in %q and keep the loaded rules\n' "$state_dir"
            ;;
        rollback | timer)
            printf '  stop the rollback timer and restore the saved state now:\n'
            plan_restore "$saved_dir"
            ;;
    esac
}

if ((dry_run)); then
    show_plan
    exit 0
fi
if ((EUID != 0)); then
    die "must run as root (--dry-run shows what it would do)"
fi

# Root-only state: saved rules, pending marker, timer pid, and a lock that
# keeps an apply, a confirm and the timer from running at the same time.
lock_state_dir() {
    local wait=${1:-60}
    if [[ -L $state_dir ]]; then
        die "$state_dir is a symlink; refusing"
    fi
    (umask 077 && mkdir -p -- "$state_dir")
    if [[ ! -d $state_dir || ! -O $state_dir ]]; then
        die "$state_dir must be a directory owned by root"
    fi
    chmod 0700 -- "$state_dir"
    exec 9>>"$state_dir/lock"
    if ((wait > 0)); then
        flock -w "$wait" 9 || die "another ${0##*/} has held $state_dir/lock for $wait s; try again later"
    else
        flock 9
    fi
}

pending_token=""
pending_deadline=""

read_pending() {
    pending_token=""
    pending_deadline=""
    [[ -f $pending_file ]] || return 1
    read -r pending_token pending_deadline <"$pending_file" || true
    [[ -n $pending_token ]]
}

# Alive and not a zombie (an orphan may wait a while to be reaped).
alive() {
    local stat
    stat=$(cat -- "/proc/$1/stat" 2>/dev/null) || return 1
    stat=${stat##*") "}
    [[ ${stat:0:1} != Z ]]
}

# The pid of the timer armed with this token, if it still runs.
timer_pid() {
    local pid="" token="" cmdline
    [[ -f $state_dir/timer.pid ]] || return 1
    read -r pid token <"$state_dir/timer.pid" || true
    [[ $pid =~ ^[0-9]+$ && $token == "$1" ]] || return 1
    alive "$pid" || return 1
    # Never signal a recycled pid: it must still be our timer.
    cmdline=$(tr '\0' ' ' 2>/dev/null <"/proc/$pid/cmdline") || return 1
    [[ $cmdline == *" --timer "*" $1 "* ]] || return 1
    printf '%s\n' "$pid"
}

cancel_timer() {
    local pid tries
    if pid=$(timer_pid "$1"); then
        # setsid made the timer leader of its own process group: this also
        # ends the sleep it waits in.
        kill -TERM -- "-$pid" 2>/dev/null || kill -TERM -- "$pid" 2>/dev/null || true
        for ((tries = 0; tries < 50; tries++)); do
            alive "$pid" || break
            sleep 0.1
        done
        if alive "$pid"; then
            kill -KILL -- "-$pid" 2>/dev/null || kill -KILL -- "$pid" 2>/dev/null || true
        fi
    fi
    rm -f -- "$state_dir/timer.pid"
}

arm_timer() {
    local tries
    rm -f -- "$state_dir/timer.pid"
    # A copy runs: editing or deleting the project meanwhile cannot break it.
    cp -- "$SELF" "$state_dir/apply.sh"
    chmod 0700 -- "$state_dir/apply.sh"
    # Its own session (setsid) and immune to hangups (nohup): closing the ssh
    # session that started it does not stop it. It must not inherit the lock.
    setsid nohup bash "$state_dir/apply.sh" --state-dir "$state_dir" --timer "$seconds" "$1" \
        </dev/null >>"$state_dir/timer.log" 2>&1 9>&- &
    for ((tries = 0; tries < 100; tries++)); do
        if timer_pid "$1" >/dev/null; then
            return 0
        fi
        sleep 0.05
    done
    return 1
}

deadline_text() {
    date -d "@$1" '+%T %Z' 2>/dev/null || printf 'epoch %s' "$1"
}

refuse_while_pending() {
    read_pending || return 0
    if timer_pid "$pending_token" >/dev/null; then
        die "a change is waiting for --confirm (rollback at $(deadline_text "$pending_deadline")); run --confirm or --rollback first"
    fi
    die "a change is waiting for --confirm, but its rollback timer is gone; run --confirm to keep the loaded rules or --rollback to restore the saved ones"
}

# Restore the saved state and record that it happened.
rollback_now() {
    backend_restore "$saved_dir" || return 1
    printf '%s (%s)\n' "$(date '+%F %T %Z')" "$1" >"$state_dir/rolled-back"
    rm -f -- "$pending_file"
}

do_check() {
    backend_check "${files[@]}"
    say "check passed: ${files[*]}; nothing was changed"
}

do_apply() {
    local token="" deadline=0 confirm_command
    lock_state_dir
    refuse_while_pending
    backend_check "${files[@]}"
    rm -rf -- "$saved_dir"
    mkdir -m 0700 -- "$saved_dir"
    backend_save "$saved_dir"
    rm -f -- "$state_dir/rolled-back"
    # From here on a dropped ssh session must not stop this script halfway.
    trap '' HUP
    if [[ $mode == confirm-within ]]; then
        token="$(date +%s)-$$-$RANDOM"
        printf '%s %s\n' "$token" "$(($(date +%s) + seconds))" >"$pending_file"
        if ! arm_timer "$token"; then
            rm -f -- "$pending_file"
            die "the rollback timer did not start (see $state_dir/timer.log); nothing was changed"
        fi
    fi
    if ! backend_apply "${files[@]}"; then
        if [[ -n $token ]]; then
            cancel_timer "$token"
        fi
        warn "loading ${files[*]} failed; restoring the saved state"
        if backend_restore "$saved_dir"; then
            rm -f -- "$pending_file"
            die "loading failed; the previous state is back"
        fi
        die "loading failed, and so did restoring the previous state (saved in $saved_dir)"
    fi
    if [[ $mode != confirm-within ]]; then
        say "loaded ${files[*]} ($WHAT)"
        return 0
    fi
    # The timer counts from now: it waits for this script's lock first.
    deadline=$(($(date +%s) + seconds))
    printf '%s %s\n' "$token" "$deadline" >"$pending_file"
    confirm_command="sudo $(printf '%q' "$SELF") --confirm"
    if [[ $state_dir != "$DEFAULT_STATE_DIR" ]]; then
        confirm_command+=" --state-dir $(printf '%q' "$state_dir")"
    fi
    say "loaded ${files[*]}; the previous state comes back at $(deadline_text "$deadline") (in $seconds s) unless confirmed"
    printf 'Open a NEW ssh session to this host and run there: %s\n' "$confirm_command"
}

do_confirm() {
    lock_state_dir
    if read_pending; then
        cancel_timer "$pending_token"
        rm -f -- "$pending_file"
        say "confirmed: the new rules stay, the rollback is cancelled"
        return 0
    fi
    if [[ -f $state_dir/rolled-back ]]; then
        die "too late: the saved state was restored at $(head -n 1 -- "$state_dir/rolled-back"); the new rules are gone"
    fi
    say "nothing to confirm: no change is waiting for confirmation"
}

do_rollback() {
    lock_state_dir
    read_pending || die "nothing to roll back: no change is waiting for confirmation"
    cancel_timer "$pending_token"
    rollback_now "--rollback" || die "restoring the saved state failed; it is in $saved_dir"
    say "rolled back: the saved state is loaded again"
}

do_timer() {
    printf '%s %s\n' "$$" "$timer_token" >"$state_dir/timer.pid.new"
    mv -f -- "$state_dir/timer.pid.new" "$state_dir/timer.pid"
    # The apply that started this timer holds the lock until the new rules are
    # in (or failed): the seconds count from then, however long loading took.
    lock_state_dir 0
    exec 9>&-
    log "rollback armed: the saved state comes back in $seconds s unless confirmed"
    sleep "$seconds"
    lock_state_dir 0
    if read_pending && [[ $pending_token == "$timer_token" ]]; then
        log "not confirmed within $seconds s: restoring the saved state"
        if rollback_now "timer"; then
            log "rolled back: the saved state is loaded again"
        else
            log "ROLLBACK FAILED: restore by hand from $saved_dir"
            exit 1
        fi
    fi
    # Only our own record: never one of a later timer.
    if [[ $(cat -- "$state_dir/timer.pid" 2>/dev/null) == "$$ $timer_token" ]]; then
        rm -f -- "$state_dir/timer.pid"
    fi
}

case $mode in
    check) do_check ;;
    apply | confirm-within) do_apply ;;
    confirm) do_confirm ;;
    rollback) do_rollback ;;
    timer) do_timer ;;
esac
