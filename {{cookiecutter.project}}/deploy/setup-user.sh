#!/usr/bin/env bash
# The dedicated unprivileged account of {{ cookiecutter.project }}, and the
# directories it may use: code and configuration it can only read, state it
# alone can write. Run it as root; a second run changes nothing.
set -euo pipefail

PROJECT="{{ cookiecutter.project }}"
SERVICE_USER="{{ cookiecutter.service_user }}"
PROG="setup-user.sh"

usage() {
    cat <<EOF
Usage: $PROG [--dry-run] [--user NAME] [--root DIR]

Creates the system user and group $SERVICE_USER (no login shell, locked
password, no supplementary groups) and lays out:

  /opt/$PROJECT       code and venv      root:root   0755  (the user cannot write it)
  /etc/$PROJECT       configuration      root:GROUP  0750
  /etc/$PROJECT/$PROJECT.env             root:GROUP  0640  (written by install.sh)
  /var/lib/$PROJECT   state              USER:GROUP  0750  (the user's home)

It refuses, changing nothing, when the user exists as a login account (a
real shell, or a uid in the range of regular users).

  --dry-run    print what would change, and change nothing (root not needed)
  --user NAME  another account name than $SERVICE_USER
  --root DIR   act on DIR/opt, DIR/etc and DIR/var/lib instead of /
  --help       this text
EOF
}

die() {
    printf '%s: error: %s\n' "$PROG" "$*" >&2
    exit 1
}

DRY_RUN=0
ROOT=""
while (($#)); do
    case $1 in
        --dry-run) DRY_RUN=1 ;;
        --user)
            (($# >= 2)) || die "--user needs a name"
            SERVICE_USER=$2
            shift
            ;;
        --root)
            (($# >= 2)) || die "--root needs a directory"
            ROOT=$2
            shift
            ;;
        -h | --help)
            usage
            exit 0
            ;;
        *) die "unknown argument: $1 (see --help)" ;;
    esac
    shift
done

[[ $SERVICE_USER =~ ^[a-z_][a-z0-9_-]{0,31}$ ]] ||
    die "--user: '$SERVICE_USER' is not a valid account name (lower case, digits, _ and -, at most 32)"
if [[ -n $ROOT ]]; then
    [[ $ROOT == /* && -d $ROOT && ! -L $ROOT ]] ||
        die "--root: '$ROOT' must be an existing directory given as an absolute path"
    ROOT=${ROOT%/}
fi
((DRY_RUN)) || (($(id -u) == 0)) || die "run it as root (sudo $0), or see --dry-run"

OPT_DIR="$ROOT/opt/$PROJECT"
ETC_DIR="$ROOT/etc/$PROJECT"
STATE_DIR="$ROOT/var/lib/$PROJECT"
ENV_FILE="$ETC_DIR/$PROJECT.env"
NOLOGIN=/usr/sbin/nologin

CHANGES=0

# Every change goes through here, so --dry-run shows exactly what a real run does.
change() {
    CHANGES=$((CHANGES + 1))
    if ((DRY_RUN)); then
        printf 'would:'
    else
        printf 'change:'
    fi
    printf ' %q' "$@"
    printf '\n'
    ((DRY_RUN)) || "$@"
}

login_defs() {
    awk -v key="$1" '$1 == key { print $2 }' /etc/login.defs 2>/dev/null | tail -n 1
}
UID_MIN=$(login_defs UID_MIN)
UID_MIN=${UID_MIN:-1000}

# Refusals first: nothing is changed unless every check passes.
check_existing_user() {
    local entry uid shell groups
    entry=$(getent passwd "$SERVICE_USER") || return 1
    IFS=: read -r _ _ uid _ _ _ shell <<<"$entry"
    case $shell in
        /usr/sbin/nologin | /sbin/nologin | /bin/false | /usr/bin/false) ;;
        *) die "user $SERVICE_USER exists as a login account (shell $shell); choose another service_user" ;;
    esac
    ((uid < UID_MIN)) ||
        die "user $SERVICE_USER exists as a regular account (uid $uid >= $UID_MIN); choose another service_user"
    groups=$(id -Gn "$SERVICE_USER")
    [[ $groups == "$SERVICE_USER" ]] ||
        die "user $SERVICE_USER is in other groups ($groups); a service account must have only its own"
    return 0
}

check_existing_group() {
    local entry gid members
    entry=$(getent group "$SERVICE_USER") || return 1
    IFS=: read -r _ _ gid members <<<"$entry"
    ((gid < UID_MIN)) || die "group $SERVICE_USER exists as a regular group (gid $gid); choose another service_user"
    [[ -z $members ]] || die "group $SERVICE_USER has members ($members); it must belong to the service alone"
    return 0
}

for path in "$OPT_DIR" "$ETC_DIR" "$STATE_DIR" "$ENV_FILE"; do
    [[ ! -L $path ]] || die "$path is a symbolic link; remove it first"
done
[[ ! -e $ENV_FILE || -f $ENV_FILE ]] || die "$ENV_FILE exists and is not a regular file"

USER_EXISTS=0
GROUP_EXISTS=0
check_existing_user && USER_EXISTS=1
check_existing_group && GROUP_EXISTS=1

# The account: a system uid, no shell, no password, no home of its own but the state directory.
if ((USER_EXISTS)); then
    echo "ok: user $SERVICE_USER exists as a system account without a login shell"
else
    group_option=(--user-group)
    ((GROUP_EXISTS)) && group_option=(--gid "$SERVICE_USER")
    change useradd --system "${group_option[@]}" --home-dir "$STATE_DIR" --no-create-home \
        --shell "$NOLOGIN" --comment "$PROJECT service" "$SERVICE_USER"
fi

password_locked() {
    local hash
    hash=$(getent shadow "$SERVICE_USER" | cut -d: -f2)
    [[ $hash == '!'* || $hash == '*'* ]]
}
if ((USER_EXISTS)) && ! password_locked; then
    change usermod --lock "$SERVICE_USER"
elif ((USER_EXISTS)); then
    echo "ok: the password of $SERVICE_USER is locked"
fi

# A directory with exactly this owner, group and mode.
ensure_dir() {
    local path=$1 owner=$2 group=$3 mode=$4 current
    if [[ ! -d $path ]]; then
        change install -d -o "$owner" -g "$group" -m "$mode" "$path"
        return
    fi
    current=$(stat -c '%U:%G %a' "$path")
    if [[ $current != "$owner:$group ${mode#0}" ]]; then
        change chown "$owner:$group" "$path"
        change chmod "$mode" "$path"
    else
        echo "ok: $path is $owner:$group $mode"
    fi
}

ensure_dir "$OPT_DIR" root root 0755
ensure_dir "$ETC_DIR" root "$SERVICE_USER" 0750
ensure_dir "$STATE_DIR" "$SERVICE_USER" "$SERVICE_USER" 0750

# The code must stay out of the service's reach, whatever was copied there.
if [[ -d $OPT_DIR ]]; then
    if [[ -n $(find "$OPT_DIR" \( ! -user root -o ! -group root \) -print -quit) ]]; then
        change chown -R root:root "$OPT_DIR"
    fi
    if [[ -n $(find "$OPT_DIR" ! -type l -perm /022 -print -quit) ]]; then
        change chmod -R go-w "$OPT_DIR"
    fi
fi

if [[ -f $ENV_FILE ]]; then
    if [[ $(stat -c '%U:%G %a' "$ENV_FILE") != "root:$SERVICE_USER 640" ]]; then
        change chown "root:$SERVICE_USER" "$ENV_FILE"
        change chmod 0640 "$ENV_FILE"
    else
        echo "ok: $ENV_FILE is root:$SERVICE_USER 0640"
    fi
fi

if ((CHANGES == 0)); then
    echo "nothing to change: $SERVICE_USER and its directories are already in place"
elif ((DRY_RUN)); then
    echo "dry run: $CHANGES change(s) listed, none made"
fi
