#!/usr/bin/env bash
# Install {{ cookiecutter.project }} on this host: the service user, a venv
# with the pinned dependencies, the env file with a fresh token, the systemd
# units and the nginx site. Run it as root from the project copy; a second run
# changes nothing.
set -euo pipefail

PROJECT="{{ cookiecutter.project }}"
PACKAGE="{{ cookiecutter.__package }}"
PREFIX="{{ cookiecutter.__package | upper }}"
PUBLIC_PORT="{{ cookiecutter.public_port }}"
SERVICE_USER="{{ cookiecutter.service_user }}"
PROG="install.sh"
DEPLOY_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
PROJECT_DIR=$(dirname "$DEPLOY_DIR")

usage() {
    cat <<EOF
Usage: $PROG [--dry-run] [--user NAME] [--root DIR] [--python PATH] [--no-start]

Installs $PROJECT from $PROJECT_DIR:
  1. deploy/setup-user.sh: the service user and its directories;
  2. a venv in /opt/$PROJECT/venv, made by the system python3, with the
     project and its pinned dependencies;
  3. /etc/$PROJECT/$PROJECT.env with a fresh random internal token, and the
     root-only /etc/$PROJECT/admin.env with a fresh admin secret, unless they
     exist (their secrets are then kept); /usr/local/sbin/$PROJECT-admin, the
     admin command as root runs it;
  4. the systemd units into /etc/systemd/system, enabled;
  5. the nginx site into /etc/nginx/sites-available, enabled, and the security
     headers of its own error pages into /etc/nginx/snippets/, written by the
     installed code from the list the app sends; Debian's default site is
     disabled (it would answer other names on port 80).
Where systemd runs (and without --root), it then (re)starts the services and
waits until http://127.0.0.1:$PUBLIC_PORT/api/v1/ready answers.

  --dry-run      print what would change, and change nothing
  --user NAME    another account name than $SERVICE_USER
  --root DIR     install below DIR instead of / (image builds, tests); starts nothing
  --python PATH  the interpreter for the venv (default /usr/bin/python3); it must
                 not live under /root or /home, which the units hide (ProtectHome)
  --no-start     install and enable, but start nothing
  --help         this text
EOF
}

die() {
    printf '%s: error: %s\n' "$PROG" "$*" >&2
    exit 1
}

DRY_RUN=0
ROOT=""
PYTHON=/usr/bin/python3
START=1
SETUP_ARGS=()
while (($#)); do
    case $1 in
        --dry-run) DRY_RUN=1 ;;
        --no-start) START=0 ;;
        --user | --root | --python)
            (($# >= 2)) || die "$1 needs a value"
            case $1 in
                --user) SERVICE_USER=$2 ;;
                --root) ROOT=${2%/} ;;
                --python) PYTHON=$2 ;;
            esac
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

((DRY_RUN)) || (($(id -u) == 0)) || die "run it as root (sudo $0), or see --dry-run"
[[ -x $PYTHON ]] || die "--python: $PYTHON is not an executable (apt-get install python3 python3-venv)"
# Both the path given and where it leads: a venv keeps the first in pyvenv.cfg.
for path in "$PYTHON" "$(readlink -f "$PYTHON")"; do
    case $path in
        /root/* | /home/*) die "--python: $PYTHON lives under /root or /home, which the units cannot see" ;;
    esac
done
"$PYTHON" -c 'import ensurepip, venv' 2>/dev/null ||
    die "--python: $PYTHON cannot make a venv (apt-get install python3-venv)"
[[ -f $PROJECT_DIR/pyproject.toml ]] || die "$PROJECT_DIR has no pyproject.toml: run the copy inside the project"

((DRY_RUN)) && SETUP_ARGS+=(--dry-run)
[[ -n $ROOT ]] && SETUP_ARGS+=(--root "$ROOT")
SETUP_ARGS+=(--user "$SERVICE_USER")

OPT_DIR="$ROOT/opt/$PROJECT"
VENV="$OPT_DIR/venv"
ETC_DIR="$ROOT/etc/$PROJECT"
ENV_FILE="$ETC_DIR/$PROJECT.env"
ADMIN_ENV="$ETC_DIR/admin.env"
ADMIN_COMMAND="$ROOT/usr/local/sbin/$PROJECT-admin"
STATE_DIR="$ROOT/var/lib/$PROJECT"
UNIT_DIR="$ROOT/etc/systemd/system"
NGINX_DIR="$ROOT/etc/nginx"
SITE="$PROJECT.conf"
UNITS=("$PROJECT-internal.socket" "$PROJECT-internal.service" "$PROJECT-api.service")
ENABLE=("$PROJECT-internal.socket" "$PROJECT-api.service")

CHANGES=0
CODE_CHANGED=0
UNITS_CHANGED=0
SITE_CHANGED=0

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

# Install a file only when its content, owner or mode differ; say whether it did.
put_file() {
    local source=$1 target=$2 owner=$3 group=$4 mode=$5
    if [[ -f $target ]] && cmp -s "$source" "$target" &&
        [[ $(stat -c '%U:%G %a' "$target") == "$owner:$group ${mode#0}" ]]; then
        echo "ok: $target is up to date"
        return 1
    fi
    change install -D -o "$owner" -g "$group" -m "$mode" "$source" "$target"
}

# 1. The user and the directories (its own checks and refusals come first).
setup_output=$("$DEPLOY_DIR/setup-user.sh" "${SETUP_ARGS[@]}") || exit 1
printf '%s\n' "$setup_output" | grep -v '^nothing to change' || true
if grep -qE '^(change|would):' <<<"$setup_output"; then
    CHANGES=$((CHANGES + 1))
fi

umask 022

# 2. The venv, from the system interpreter; the service user can read it and not write it.
if [[ ! -x $VENV/bin/python ]]; then
    change "$PYTHON" -m venv "$VENV"
else
    echo "ok: $VENV exists"
fi

# What is installed is recorded as a digest of the sources, so an unchanged
# project is not reinstalled and a changed one always is.
digest=$(cd "$PROJECT_DIR" && find pyproject.toml README.md src -type f ! -path '*/__pycache__/*' \
    -print0 | LC_ALL=C sort -z | xargs -0 sha256sum | sha256sum | cut -d' ' -f1)
STAMP="$VENV/.installed-sources"
if [[ -f $STAMP && $(cat "$STAMP") == "$digest" ]]; then
    echo "ok: $PROJECT is installed from these sources"
else
    CODE_CHANGED=1
    if ((DRY_RUN)); then
        change "$VENV/bin/pip" install "$PROJECT_DIR"
    else
        # Build from a copy, so that nothing is written into the operator's tree.
        build=$(mktemp -d)
        trap 'rm -rf "$build"' EXIT
        cp -r "$PROJECT_DIR/pyproject.toml" "$PROJECT_DIR/README.md" "$PROJECT_DIR/src" "$build/"
        change "$VENV/bin/pip" install --quiet --disable-pip-version-check --no-cache-dir "$build"
        printf '%s\n' "$digest" >"$STAMP"
    fi
fi

# 3. The env file: the token is made once and kept, so a reinstall does not cut
# open connections. 0640 root:GROUP from the first byte.
if [[ -f $ENV_FILE ]]; then
    echo "ok: $ENV_FILE exists; its token is kept"
else
    token=$("$PYTHON" -c 'import secrets; print(secrets.token_urlsafe(48))')
    draft=$(mktemp)
    chmod 0600 "$draft"
    {
        echo "# Settings of $PROJECT; see README.md for every ${PREFIX}_* variable."
        echo "${PREFIX}_INTERNAL_TOKEN=$token"
        echo "${PREFIX}_STATE_DIR=$STATE_DIR"
        # Shared by both units (RuntimeDirectory): metrics.py's samples, if METRICS_PORT is set.
        echo "${PREFIX}_METRICS_DIR=/run/$PROJECT/metrics"
    } >"$draft"
    if ((DRY_RUN)); then
        echo "would: write $ENV_FILE (root:$SERVICE_USER 0640) with a fresh token"
        CHANGES=$((CHANGES + 1))
    else
        change install -o root -g "$SERVICE_USER" -m 0640 "$draft" "$ENV_FILE"
    fi
    rm -f "$draft"
fi

# The admin secret: root's alone (0600 root:root). systemd reads it for the
# internal service; the API's unit never names it.
if [[ -f $ADMIN_ENV ]]; then
    echo "ok: $ADMIN_ENV exists; its secret is kept"
else
    draft=$(mktemp)
    chmod 0600 "$draft"
    {
        echo "# The admin secret of $PROJECT: the internal service and $PROJECT-admin only."
        echo "${PREFIX}_ADMIN_TOKEN=$("$PYTHON" -c 'import secrets; print(secrets.token_urlsafe(48))')"
    } >"$draft"
    if ((DRY_RUN)); then
        echo "would: write $ADMIN_ENV (root:root 0600) with a fresh admin secret"
        CHANGES=$((CHANGES + 1))
    else
        change install -o root -g root -m 0600 "$draft" "$ADMIN_ENV"
    fi
    rm -f "$draft"
fi

# The admin command as root runs it: both env files, then the venv's console script.
wrapper=$(mktemp)
cat >"$wrapper" <<EOF
#!/bin/sh
# $PROJECT-admin, written by deploy/install.sh: API tokens and the audit trail.
set -a
. /etc/$PROJECT/$PROJECT.env
. /etc/$PROJECT/admin.env
set +a
exec /opt/$PROJECT/venv/bin/$PROJECT-admin "\$@"
EOF
put_file "$wrapper" "$ADMIN_COMMAND" root root 0755 || true
rm -f "$wrapper"

# 4. The units.
for unit in "${UNITS[@]}"; do
    if put_file "$DEPLOY_DIR/systemd/$unit" "$UNIT_DIR/$unit" root root 0644; then
        UNITS_CHANGED=1
    fi
done
if command -v systemctl >/dev/null; then
    for unit in "${ENABLE[@]}"; do
        if systemctl ${ROOT:+--root="$ROOT"} is-enabled --quiet "$unit" 2>/dev/null; then
            echo "ok: $unit is enabled"
        else
            change systemctl ${ROOT:+--root="$ROOT"} enable --quiet "$unit"
        fi
    done
else
    echo "note: no systemctl here; enable ${ENABLE[*]} by hand"
fi

# 5. The nginx site.
if put_file "$DEPLOY_DIR/nginx/$SITE" "$NGINX_DIR/sites-available/$SITE" root root 0644; then
    SITE_CHANGED=1
fi
link="$NGINX_DIR/sites-enabled/$SITE"
if [[ -L $link && $(readlink "$link") == "../sites-available/$SITE" ]]; then
    echo "ok: $link is enabled"
else
    [[ -e $link && ! -L $link ]] && die "$link exists and is not a link; move it away"
    [[ -d $NGINX_DIR/sites-enabled ]] || change install -d -m 0755 "$NGINX_DIR/sites-enabled"
    change ln -sfn "../sites-available/$SITE" "$link"
    SITE_CHANGED=1
fi

# The headers nginx adds to the errors it writes itself: the app's own list
# (api/harden.py), printed by the code just installed, for each scheme.
for scheme in https http; do
    snippet="$NGINX_DIR/snippets/$PROJECT-headers-$scheme.conf"
    if [[ ! -x $VENV/bin/python ]]; then
        # Only a dry run gets here: the venv does not exist yet.
        echo "would: write $snippet from the project's api/harden.py"
        CHANGES=$((CHANGES + 1))
        continue
    fi
    draft=$(mktemp)
    "$VENV/bin/python" -m "$PACKAGE.api.nginx_headers" "$scheme" >"$draft" ||
        die "$PACKAGE.api.nginx_headers $scheme failed; the nginx site would lack its headers"
    if put_file "$draft" "$snippet" root root 0644; then
        SITE_CHANGED=1
    fi
    rm -f "$draft"
done

# Debian's default site is the default server of port 80: it would answer
# other host names with its welcome page and a Server header.
if [[ -L $NGINX_DIR/sites-enabled/default ]]; then
    change rm "$NGINX_DIR/sites-enabled/default"
    SITE_CHANGED=1
fi

# 6. Start, where systemd runs this host.
if ((START)) && [[ -z $ROOT ]] && [[ -d /run/systemd/system ]]; then
    ((UNITS_CHANGED)) && change systemctl daemon-reload
    if ((CODE_CHANGED || UNITS_CHANGED)); then
        change systemctl restart "$PROJECT-internal.socket" "$PROJECT-api.service"
    fi
    for unit in "${ENABLE[@]}"; do
        systemctl is-active --quiet "$unit" || change systemctl start "$unit"
    done
    if ((SITE_CHANGED)); then
        if nginx -t 2>/dev/null; then
            change systemctl reload nginx
        else
            echo "note: nginx -t fails (no certificate yet?): see README.md, Deploying" >&2
        fi
    fi
    if ((!DRY_RUN)); then
        # The API answers ready once the internal service answers it (30 s at most).
        ready="http://127.0.0.1:$PUBLIC_PORT/api/v1/ready"
        "$VENV/bin/python" - "$ready" <<'EOF' || die "$ready did not answer 200 within 30 s: journalctl -u $PROJECT-api -u $PROJECT-internal"
import sys, time, urllib.request
deadline = time.monotonic() + 30
while True:
    try:
        with urllib.request.urlopen(sys.argv[1], timeout=2) as answer:
            if answer.status == 200:
                print("ready:", sys.argv[1])
                break
    except OSError:
        pass
    if time.monotonic() > deadline:
        sys.exit(1)
    time.sleep(0.5)
EOF
    fi
else
    echo "note: systemd does not run here (or --root/--no-start): nothing started"
fi

if ((CHANGES == 0)); then
    echo "nothing to change: $PROJECT is installed as it should be"
elif ((DRY_RUN)); then
    echo "dry run: nothing was changed"
fi
