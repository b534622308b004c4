#!/usr/bin/env bash
# {{ cookiecutter.project }}: the PostgreSQL database host, locked down like the rest.
#
# On a Debian 12 host with Debian's postgresql package (or on a cluster of
# your own, --data-dir), as root: a dedicated role that owns only its schema,
# TLS 1.3 only with certificates of the project's CA (deploy/pki.sh), and
# pg_hba.conf lines for the internal service hosts alone, every other way in
# refused. A second run changes nothing, and says so.
set -euo pipefail

# Root runs this: a fixed PATH, and tool output in English (it is parsed).
export PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin
export LC_ALL=C
umask 077

readonly PROJECT='{{ cookiecutter.project }}'
# The role, its database and its schema share one name: PostgreSQL's default
# search_path ("$user", public) then finds the schema with no setting at all.
readonly ROLE='{{ cookiecutter.__package }}'
readonly TRUSTED_CLIENTS='{{ cookiecutter.__trusted_clients }}'
readonly PG_VERSION=15
readonly PROG=setup.sh
readonly MARK="# managed by $PROJECT deploy/postgresql/setup.sh: edits here are replaced"

usage() {
    cat <<USAGE
Usage: $PROG --listen ADDRESS [--listen ADDRESS] [options]

Set up PostgreSQL $PG_VERSION on the database host of $PROJECT, as root:

  - role $ROLE: LOGIN, NOSUPERUSER NOCREATEDB NOCREATEROLE NOREPLICATION
    NOBYPASSRLS; database $ROLE (owned by postgres, CONNECT for $ROLE alone)
    and in it schema $ROLE, owned by $ROLE; nobody may use schema public;
  - conf.d/$PROJECT.conf: listen_addresses = the --listen addresses only,
    ssl = on with the project CA's files, ssl_min_protocol_version = TLSv1.3,
    password_encryption = scram-sha-256, log_connections = on;
  - pg_hba.conf (the old one kept once as pg_hba.conf.before-$PROJECT): the
    postgres admin over the local socket (peer); "hostssl" for $ROLE from
    each --client, with a client certificate (cert, CN=$ROLE) or a
    scram-sha-256 password; plain TCP, other hosts and other roles: reject.

Then reloads or restarts PostgreSQL if anything changed.

  --listen ADDRESS      this host's private IPv4 or IPv6 address to listen on
                        (repeat for both families); no wildcard
  --client ADDRESS      an internal service host: an IP address or CIDR (repeat);
                        default: the project's trusted clients (${TRUSTED_CLIENTS:-none})
  --auth METHOD         cert (default: the client certificate of deploy/pki.sh
                        database-client) or scram-sha-256 (a password)
  --tls-dir DIR         where deploy/pki.sh wrote ca.crt, database.crt and
                        database.key (default /etc/$PROJECT/tls); they are
                        copied to the configuration directory, owned by postgres
  --password-file FILE  scram-sha-256: a pgpass file with the role's password,
                        made (random, root 0600) if missing, else its password
                        is kept (default /etc/postgresql/$PROJECT.pgpass)
  --archive-dir DIR     also archive WAL into DIR (archive_mode = on, made
                        postgres 0700): with a base backup, restores to any moment
  --data-dir DIR        a cluster made by initdb instead of Debian's $PG_VERSION/main:
                        its files are in DIR, and pg_ctl -D DIR restarts it
  --port PORT           the server's port (default 5432)
  --socket-dir DIR      its Unix socket directory (default /var/run/postgresql)
  -n, --dry-run         say what would change, change nothing
  -h, --help            this text

Exit status: 0 done (or nothing to do), 1 failed, 2 bad arguments.
USAGE
}

die() {
    printf '%s: error: %s\n' "$PROG" "$1" >&2
    exit 1
}

usage_error() {
    printf '%s: error: %s (see --help)\n' "$PROG" "$1" >&2
    exit 2
}

# ---------------------------------------------------------------- addresses

is_ipv4() {
    local part
    local -a parts
    [[ $1 =~ ^(0|[1-9][0-9]{0,2})(\.(0|[1-9][0-9]{0,2})){3}$ ]] || return 1
    IFS=. read -ra parts <<<"$1"
    for part in "${parts[@]}"; do
        ((part <= 255)) || return 1
    done
}

# Hex groups around at most one "::", eight in all without it; no zone id.
is_ipv6() {
    local address=$1 group groups=0
    local -a parts
    [[ $address =~ ^[0-9A-Fa-f:]+$ && $address == *:*:* ]] || return 1
    [[ $address != *:::* && $address != *::*::* ]] || return 1
    [[ $address != :* || $address == ::* ]] || return 1
    [[ $address != *: || $address == *:: ]] || return 1
    IFS=: read -ra parts <<<"$address"
    for group in "${parts[@]}"; do
        [[ -z $group ]] && continue
        [[ $group =~ ^[0-9A-Fa-f]{1,4}$ ]] || return 1
        groups=$((groups + 1))
    done
    if [[ $address == *::* ]]; then
        ((groups <= 7))
    else
        ((groups == 8))
    fi
}

count() {
    printf '%s\n' "$#"
}

# Nothing but zeros, dots and colons: 0.0.0.0 or ::, every address.
is_wildcard() {
    [[ -z ${1//[0:.]/} ]]
}

# A --client value as a pg_hba address with its prefix length, or a refusal.
client_cidr() {
    local value=$1 address prefix max
    address=${value%/*}
    prefix=""
    [[ $value == */* ]] && prefix=${value#*/}
    if is_ipv4 "$address"; then
        max=32
    elif is_ipv6 "$address"; then
        max=128
    else
        usage_error "--client: '$value' is not an IP address or CIDR"
    fi
    if [[ -n $prefix || $value == */ ]]; then
        if ! [[ $prefix =~ ^[1-9][0-9]{0,2}$ ]] || ((prefix > max)); then
            usage_error "--client: '$value' needs a prefix length of 1-$max"
        fi
    fi
    ! is_wildcard "$address" || usage_error "--client: '$value' is every address; name the internal service hosts"
    printf '%s/%s\n' "$address" "${prefix:-$max}"
}

# ---------------------------------------------------------------- arguments

LISTEN=()
CLIENTS=()
AUTH=cert
TLS_DIR=/etc/$PROJECT/tls
PASSWORD_FILE=/etc/postgresql/$PROJECT.pgpass
ARCHIVE_DIR=""
DATA_DIR=""
PORT=5432
SOCKET_DIR=/var/run/postgresql
DRY_RUN=0

need_value() {
    (($2 >= 2)) || usage_error "$1 needs a value"
}

while (($#)); do
    case $1 in
        --listen | --client | --auth | --tls-dir | --password-file | --archive-dir | --data-dir | --port | --socket-dir)
            need_value "$1" "$#"
            case $1 in
                --listen) LISTEN+=("$2") ;;
                --client) CLIENTS+=("$2") ;;
                --auth) AUTH=$2 ;;
                --tls-dir) TLS_DIR=$2 ;;
                --password-file) PASSWORD_FILE=$2 ;;
                --archive-dir) ARCHIVE_DIR=$2 ;;
                --data-dir) DATA_DIR=$2 ;;
                --port) PORT=$2 ;;
                --socket-dir) SOCKET_DIR=$2 ;;
            esac
            shift
            ;;
        -n | --dry-run) DRY_RUN=1 ;;
        -h | --help)
            usage
            exit 0
            ;;
        *) usage_error "unknown argument: $1" ;;
    esac
    shift
done

(($(count "${LISTEN[@]}"))) || usage_error "--listen ADDRESS is required: this host's private address"
for address in "${LISTEN[@]}"; do
    is_ipv4 "$address" || is_ipv6 "$address" ||
        usage_error "--listen: '$address' is not an IPv4 or IPv6 address"
    ! is_wildcard "$address" || usage_error "--listen: '$address' is every address; give this host's private one"
done
if (($(count "${CLIENTS[@]}") == 0)); then
    read -ra CLIENTS <<<"$TRUSTED_CLIENTS"
    (($(count "${CLIENTS[@]}"))) || usage_error "--client ADDRESS is required: the project has no trusted clients to default to"
fi
HBA_ADDRESSES=()
for client in "${CLIENTS[@]}"; do
    HBA_ADDRESSES+=("$(client_cidr "$client")") || exit 2
done
case $AUTH in
    cert | scram-sha-256) ;;
    *) usage_error "--auth: '$AUTH' is not cert or scram-sha-256" ;;
esac
if ! [[ $PORT =~ ^[1-9][0-9]{0,4}$ ]] || ((PORT > 65535)); then
    usage_error "--port: '$PORT' is not a port (1-65535)"
fi
for option in TLS_DIR PASSWORD_FILE ARCHIVE_DIR DATA_DIR SOCKET_DIR; do
    value=${!option}
    flag=--$(tr '[:upper:]_' '[:lower:]-' <<<"$option")
    if [[ -n $value && $value != /* ]]; then
        usage_error "$flag: '$value' is not an absolute path"
    fi
    if [[ $value =~ [\'\\[:space:]] ]]; then
        usage_error "$flag: '$value' has a quote, a backslash or a space"
    fi
done
[[ $AUTH == scram-sha-256 || $PASSWORD_FILE == "/etc/postgresql/$PROJECT.pgpass" ]] ||
    usage_error "--password-file is for --auth scram-sha-256"

((EUID == 0)) || die "must run as root (it acts as the postgres account and changes its files)"
for command in runuser psql pg_isready cmp install; do
    command -v "$command" >/dev/null || die "$command not found (apt-get install postgresql)"
done
getent passwd postgres >/dev/null || die "no postgres account: install Debian's postgresql package first"

if [[ -n $DATA_DIR ]]; then
    CONFIG_DIR=${DATA_DIR%/}
    PG_CTL=/usr/lib/postgresql/$PG_VERSION/bin/pg_ctl
    [[ -f $DATA_DIR/PG_VERSION ]] || die "--data-dir: $DATA_DIR holds no cluster (no PG_VERSION file)"
else
    CONFIG_DIR=/etc/postgresql/$PG_VERSION/main
fi
[[ -f $CONFIG_DIR/postgresql.conf ]] || die "no $CONFIG_DIR/postgresql.conf: install Debian's postgresql package, or give --data-dir"
readonly CONF_D=$CONFIG_DIR/conf.d
readonly TLS_COPY=$CONFIG_DIR/$PROJECT-tls
for name in ca.crt database.crt database.key; do
    [[ -f $TLS_DIR/$name ]] ||
        die "no $TLS_DIR/$name: run deploy/pki.sh ca, then deploy/pki.sh database ${LISTEN[*]}, on the host that keeps the CA, and copy them here"
done

# ---------------------------------------------------------------- reporting

CHANGED=0
RESTART=0
RELOAD=0
PREVIOUS_HBA=""
trap '[[ -z $PREVIOUS_HBA ]] || rm -f -- "$PREVIOUS_HBA"' EXIT

ok() { printf 'ok: %s\n' "$1"; }

# change WHAT: report, and say whether to go ahead (not in a dry run).
change() {
    CHANGED=1
    if ((DRY_RUN)); then
        printf 'would change: %s\n' "$1"
        return 1
    fi
    printf 'changed: %s\n' "$1"
}

# ---------------------------------------------------------------- SQL

# psql as the postgres admin over the local socket (peer authentication).
psql_admin() {
    local database=$1
    shift
    (cd / && runuser -u postgres -- psql -X -q -At -v ON_ERROR_STOP=1 \
        -h "$SOCKET_DIR" -p "$PORT" -d "$database" "$@")
}

sql() {
    psql_admin "$1" -c "$2" || die "psql failed on database $1: $2"
}

# ensure DATABASE WHAT CHECK-QUERY (prints t when all is well) FIX-STATEMENT...
ensure() {
    local database=$1 what=$2 check=$3 statement answer
    shift 3
    # sql dies in the $(...) subshell only: stop here too.
    answer=$(sql "$database" "$check") || exit 1
    if [[ $answer == t ]]; then
        ok "$what"
        return
    fi
    change "$what" || return 0
    for statement in "$@"; do
        sql "$database" "$statement" >/dev/null
    done
}

# Whether a query counts exactly one row (set -e does not reach into a condition).
counts_one() {
    local count
    count=$(sql postgres "$1") || exit 1
    [[ $count == 1 ]]
}

role_exists() {
    counts_one "SELECT count(*) FROM pg_roles WHERE rolname = '$ROLE'"
}

database_exists() {
    counts_one "SELECT count(*) FROM pg_database WHERE datname = '$ROLE'"
}

ensure_role() {
    local attributes="LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE NOREPLICATION NOBYPASSRLS"
    ensure postgres "role $ROLE exists" \
        "SELECT count(*) = 1 FROM pg_roles WHERE rolname = '$ROLE'" \
        "CREATE ROLE \"$ROLE\" $attributes"
    if ((DRY_RUN)) && ! role_exists; then
        return
    fi
    ensure postgres "role $ROLE: $attributes" \
        "SELECT rolcanlogin AND NOT (rolsuper OR rolcreatedb OR rolcreaterole OR rolreplication OR rolbypassrls)
           FROM pg_roles WHERE rolname = '$ROLE'" \
        "ALTER ROLE \"$ROLE\" $attributes"
}

ensure_database() {
    ensure postgres "database $ROLE exists, owned by postgres" \
        "SELECT count(*) = 1 FROM pg_database WHERE datname = '$ROLE'" \
        "CREATE DATABASE \"$ROLE\" OWNER postgres TEMPLATE template0 ENCODING 'UTF8' LOCALE 'C.UTF-8'"
    if ((DRY_RUN)) && { ! database_exists || ! role_exists; }; then
        printf 'would change: database %s: CONNECT for %s alone\n' "$ROLE" "$ROLE"
        return
    fi
    # PUBLIC may CONNECT and make TEMP tables in a new database: only the role may connect.
    ensure postgres "database $ROLE: CONNECT for $ROLE alone" \
        "SELECT (SELECT count(*) = 0 FROM pg_database d,
                   aclexplode(coalesce(d.datacl, acldefault('d', d.datdba))) a
                 WHERE d.datname = '$ROLE' AND a.grantee = 0)
            AND has_database_privilege('$ROLE', '$ROLE', 'CONNECT')" \
        "REVOKE ALL ON DATABASE \"$ROLE\" FROM PUBLIC" \
        "GRANT CONNECT ON DATABASE \"$ROLE\" TO \"$ROLE\""
}

ensure_schema() {
    if ((DRY_RUN)) && { ! database_exists || ! role_exists; }; then
        printf 'would change: schema %s in database %s, owned by %s; schema public: no rights for PUBLIC\n' "$ROLE" "$ROLE" "$ROLE"
        return
    fi
    ensure "$ROLE" "schema $ROLE in database $ROLE, owned by $ROLE" \
        "SELECT coalesce((SELECT nspowner::regrole::text = '$ROLE' FROM pg_namespace
                          WHERE nspname = '$ROLE'), false)" \
        "CREATE SCHEMA IF NOT EXISTS \"$ROLE\" AUTHORIZATION \"$ROLE\"" \
        "ALTER SCHEMA \"$ROLE\" OWNER TO \"$ROLE\""
    # Everything the role makes goes to its own schema; public is nobody's.
    ensure "$ROLE" "schema public in database $ROLE: no rights for PUBLIC" \
        "SELECT count(*) = 0 FROM pg_namespace n,
           aclexplode(coalesce(n.nspacl, acldefault('n', n.nspowner))) a
         WHERE n.nspname = 'public' AND a.grantee = 0" \
        "REVOKE ALL ON SCHEMA public FROM PUBLIC"
}

# ---------------------------------------------------------------- files

# put_file TARGET MODE OWNER WHAT KIND < content: KIND is restart or reload,
# what the server needs to see the new file.
put_file() {
    local target=$1 mode=$2 owner=$3 what=$4 kind=$5 new
    new=$(mktemp)
    cat >"$new"
    if [[ -f $target ]] && cmp -s -- "$new" "$target" &&
        [[ $(stat -c '%a %U' -- "$target") == "${mode#0} $owner" ]]; then
        ok "$what"
    elif change "$what"; then
        install -m "$mode" -o "$owner" -g "$owner" -- "$new" "$target"
        if [[ $kind == restart ]]; then RESTART=1; else RELOAD=1; fi
    fi
    rm -f -- "$new"
}

ensure_dir() {
    local dir=$1 what=$2
    if [[ -d $dir && $(stat -c '%a %U' -- "$dir") == "700 postgres" ]]; then
        ok "$what"
    elif change "$what"; then
        install -d -m 0700 -o postgres -g postgres -- "$dir"
    fi
}

install_tls() {
    local name
    ensure_dir "$TLS_COPY" "$TLS_COPY (postgres 0700)"
    for name in ca.crt database.crt database.key; do
        # The server refuses a key that others can read.
        put_file "$TLS_COPY/$name" 0600 postgres "$TLS_COPY/$name, from $TLS_DIR" restart <"$TLS_DIR/$name"
    done
}

join_by() {
    local IFS=$1
    shift
    printf '%s' "$*"
}

server_settings() {
    printf '%s\n' "$MARK"
    printf "listen_addresses = '%s'\n" "$(join_by , "${LISTEN[@]}")"
    printf '# TLS 1.3 only, with the CA of deploy/pki.sh for client certificates.\n'
    printf "ssl = on\nssl_cert_file = '%s'\nssl_key_file = '%s'\nssl_ca_file = '%s'\n" \
        "$TLS_COPY/database.crt" "$TLS_COPY/database.key" "$TLS_COPY/ca.crt"
    printf "ssl_min_protocol_version = 'TLSv1.3'\n"
    printf "password_encryption = 'scram-sha-256'\n"
    printf '# Who connected from where, and who was refused, in the server log.\nlog_connections = on\n'
    if [[ -n $ARCHIVE_DIR ]]; then
        printf '# Every finished WAL segment is copied to %s, never over an older copy.\n' "$ARCHIVE_DIR"
        printf "archive_mode = on\narchive_command = 'test ! -f %s/%%f && cp %%p %s/%%f'\n" \
            "$ARCHIVE_DIR" "$ARCHIVE_DIR"
    fi
}

hba_rules() {
    local address
    printf '%s\n' "$MARK"
    printf '# TYPE    DATABASE  USER      ADDRESS  METHOD\n'
    printf '# The admin: the postgres account over the local socket, nobody else there.\n'
    printf 'local     all       postgres           peer\n'
    printf '# Its base backups (pg_basebackup) over the same socket.\n'
    printf 'local     replication postgres         peer\n'
    printf 'local     all       all                reject\n'
    printf '# %s from the internal service hosts alone, over TLS only.\n' "$ROLE"
    for address in "${HBA_ADDRESSES[@]}"; do
        printf 'hostssl   %s  %s  %s  %s\n' "$ROLE" "$ROLE" "$address" "$AUTH"
    done
    printf '# Everything else over the network, TLS or not, is refused: plain TCP\n'
    printf '# (hostnossl) first, so its refusal never depends on the lines above.\n'
    printf 'hostnossl all       all       0.0.0.0/0  reject\n'
    printf 'hostnossl all       all       ::/0       reject\n'
    printf 'host      all       all       0.0.0.0/0  reject\n'
    printf 'host      all       all       ::/0       reject\n'
}

ensure_include() {
    local conf=$CONFIG_DIR/postgresql.conf
    if grep -Eq "^[[:space:]]*include_dir[[:space:]]*=?[[:space:]]*'(conf\.d|$CONF_D)'" -- "$conf"; then
        ok "$conf includes conf.d"
    elif change "$conf includes conf.d (a line added at its end)"; then
        printf "\n# Added by %s deploy/postgresql/setup.sh\ninclude_dir = 'conf.d'\n" "$PROJECT" >>"$conf"
        RESTART=1
    fi
}

ensure_hba() {
    local hba=$CONFIG_DIR/pg_hba.conf
    if [[ -f $hba && ! -e $hba.before-$PROJECT ]] && ! grep -qxF -- "$MARK" "$hba"; then
        if change "the original $hba is kept as $hba.before-$PROJECT"; then
            cp -p -- "$hba" "$hba.before-$PROJECT"
        fi
    fi
    # The file as it was, to put back if PostgreSQL finds a mistake in the new one.
    PREVIOUS_HBA=$(mktemp)
    cp -p -- "$hba" "$PREVIOUS_HBA"
    hba_rules | put_file "$hba" 0640 postgres "$hba: hostssl for $ROLE from ${HBA_ADDRESSES[*]} ($AUTH), the rest refused" reload
}

# The server judges pg_hba.conf as it would load it. Before a restart that
# turns TLS on, it still calls every hostssl line useless: that one is let pass
# then, and the file is judged again once the server runs with the new settings.
check_hba() {
    local when=$1 errors
    errors=$(sql postgres "SELECT string_agg(line_number || ': ' || error, '; ') FROM pg_hba_file_rules
                           WHERE error IS NOT NULL
                             AND NOT ('$when' = 'before' AND error LIKE 'hostssl record cannot match because SSL is%')")
    [[ -z $errors ]] && return
    cp -p -- "$PREVIOUS_HBA" "$CONFIG_DIR/pg_hba.conf"
    [[ $when == before ]] || restart_server reload
    die "PostgreSQL refuses the new pg_hba.conf ($errors); the previous one is back"
}

ensure_archive_dir() {
    [[ -n $ARCHIVE_DIR ]] || return 0
    ensure_dir "$ARCHIVE_DIR" "WAL archive $ARCHIVE_DIR (postgres 0700)"
}

# ---------------------------------------------------------------- password

# psql's \password hashes the password itself (SCRAM): the server, its log and
# its statistics only ever see the verifier. With no terminal (setsid) it reads
# the password from standard input, twice.
set_password() {
    local password=$1
    printf '%s\n%s\n' "$password" "$password" |
        (cd / && setsid -w runuser -u postgres -- psql -X -q -h "$SOCKET_DIR" -p "$PORT" \
            -d postgres -c "\\password \"$ROLE\"") 2>/dev/null ||
        die "psql \\password $ROLE failed"
}

ensure_password() {
    local password="" has
    [[ $AUTH == scram-sha-256 ]] || return 0
    has=$(sql postgres "SELECT count(*) FROM pg_authid WHERE rolname = '$ROLE' AND rolpassword LIKE 'SCRAM-SHA-256\$%'")
    if [[ -f $PASSWORD_FILE ]]; then
        password=$(cut -d: -f5- -- "$PASSWORD_FILE")
        [[ $password =~ ^[0-9a-f]{48}$ ]] || die "$PASSWORD_FILE holds no password of this script; move it away"
        if [[ $has == 1 ]]; then
            ok "role $ROLE has a scram-sha-256 password (kept: $PASSWORD_FILE)"
            return
        fi
    elif change "$PASSWORD_FILE holds a new random password for $ROLE (root 0600)"; then
        password=$(openssl rand -hex 24)
        [[ -d ${PASSWORD_FILE%/*} ]] || install -d -m 0700 -- "${PASSWORD_FILE%/*}"
        printf '*:%s:%s:%s:%s\n' "$PORT" "$ROLE" "$ROLE" "$password" >"$PASSWORD_FILE"
    fi
    if change "role $ROLE has the password of $PASSWORD_FILE, as a scram-sha-256 verifier"; then
        set_password "$password"
    fi
}

# ---------------------------------------------------------------- server

server_up() {
    pg_isready -q -h "$SOCKET_DIR" -p "$PORT"
}

restart_server() {
    local how=$1
    if [[ -n $DATA_DIR ]]; then
        (cd / && runuser -u postgres -- "$PG_CTL" -D "$DATA_DIR" -w -m fast "$how" >/dev/null) ||
            die "pg_ctl $how failed (see the server's log)"
    else
        pg_ctlcluster "$PG_VERSION" main "$how" || die "pg_ctlcluster $PG_VERSION main $how failed"
    fi
    printf 'changed: PostgreSQL %s\n' "${how}ed"
}

main() {
    [[ $AUTH != scram-sha-256 ]] || command -v openssl >/dev/null || die "openssl not found (apt-get install openssl)"
    server_up || die "PostgreSQL does not answer on $SOCKET_DIR port $PORT: start it first (pg_ctlcluster $PG_VERSION main start)"
    ensure_role
    ensure_database
    ensure_schema
    ensure_password
    install_tls
    ensure_archive_dir
    if [[ -d $CONF_D ]]; then
        ok "$CONF_D exists"
    elif change "$CONF_D exists (postgres 0700)"; then
        install -d -m 0700 -o postgres -g postgres -- "$CONF_D"
    fi
    server_settings | put_file "$CONF_D/$PROJECT.conf" 0600 postgres "$CONF_D/$PROJECT.conf" restart
    ensure_include
    ensure_hba
    if ((DRY_RUN)); then
        ((CHANGED)) || printf 'nothing to change\n'
        printf 'dry run: nothing was changed\n'
        return
    fi
    check_hba before
    if ((RESTART)); then
        restart_server restart
    elif ((RELOAD)); then
        restart_server reload
    fi
    check_hba after
    ((CHANGED)) || printf 'nothing to change\n'
}

main
