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
readonly BACKEND='{{ cookiecutter.firewall }}'
SELF=$(readlink -f -- "${BASH_SOURCE[0]}")
readonly SELF
HERE=$(dirname -- "$SELF")
readonly HERE
readonly DEFAULT_STATE_DIR="/run/$PROJECT-firewall"
readonly MAX_SECONDS=86400

# The chosen backend's functions and names; only its folder is generated.
# shellcheck source-path=SCRIPTDIR source={{ cookiecutter.firewall }}/backend.sh
source "$HERE/$BACKEND/backend.sh"

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
    # A copy runs, with its backend: editing or deleting the project meanwhile cannot break it.
    cp -- "$SELF" "$state_dir/apply.sh"
    chmod 0700 -- "$state_dir/apply.sh"
    install -D -m 0600 -- "$HERE/$BACKEND/backend.sh" "$state_dir/$BACKEND/backend.sh"
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
