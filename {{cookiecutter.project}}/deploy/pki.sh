#!/usr/bin/env bash
# The private CA of {{ cookiecutter.project }} and the certificates for mutual TLS
# between the API hosts and the internal service (several-hosts mode).
# Plain openssl. A second run changes nothing: nothing is ever overwritten.
set -euo pipefail

# Every file this script writes is private from its first byte; certificates
# are opened up to 0644 afterwards.
umask 077

PROJECT="{{ cookiecutter.project }}"
SERVICE_GROUP="{{ cookiecutter.service_user }}"
PREFIX="{{ cookiecutter.__package | upper }}"
{%- if cookiecutter.database == "postgresql" %}
# The database role: a client certificate of this CN logs in as it (cert auth).
DB_ROLE="{{ cookiecutter.__package }}"
{%- endif %}
PROG="pki.sh"
DEFAULT_DIR="/etc/$PROJECT/tls"

# The CA lives about five years; what it signs about one year (13 months:
# renewed once a year, with a month to spare).
CA_DAYS=1826
CERT_DAYS=397
RENEW_WARNING_DAYS=30

usage() {
    cat <<EOF
Usage: $PROG [--dir DIR] [--dry-run] ca
       $PROG [--dir DIR] [--dry-run] server ADDRESS [ADDRESS...]
       $PROG [--dir DIR] [--dry-run] client NAME
{%- if cookiecutter.database == "postgresql" %}
       $PROG [--dir DIR] [--dry-run] database ADDRESS [ADDRESS...]
       $PROG [--dir DIR] [--dry-run] database-client NAME
{%- endif %}

Makes the files for mutual TLS between the API hosts and the internal service
of $PROJECT: a CA of its own, which signs one server certificate and one
client certificate per API host. The internal service accepts only clients
with a certificate of this CA (and the token after that); the API accepts
only a server certificate of this CA that names the address it dials.

  ca       DIR/ca.key and DIR/ca.crt: the CA, valid $CA_DAYS days
           (CA:TRUE, pathlen:0, keyCertSign and cRLSign only).
  server   DIR/server.key and DIR/server.crt for the internal service, valid
           $CERT_DAYS days, for each ADDRESS: the IP address or DNS name the
           API hosts put in ${PREFIX}_INTERNAL_ADDRESS.
  client   DIR/client-NAME.key and DIR/client-NAME.crt for one API host
           (CN=NAME), valid $CERT_DAYS days.
{%- if cookiecutter.database == "postgresql" %}
  database DIR/database.key and DIR/database.crt for PostgreSQL on the
           database host (deploy/postgresql/setup.sh), for each ADDRESS the
           internal service hosts dial (libpq's sslmode=verify-full checks it).
  database-client
           DIR/database-client-NAME.key and .crt for one internal service host
           (CN=$DB_ROLE: PostgreSQL's cert authentication logs it in as that role).
{%- endif %}

Keys are EC P-256: the strength of RSA 3072 in a fraction of the size and
handshake time, and accepted by every TLS 1.3 stack (Python's ssl included).
They are written with umask 077 and never encrypted (the service starts
unattended). ca.key stays 0600. The other keys are root:$SERVICE_GROUP 0640
when run as root where the group $SERVICE_GROUP exists, else 0600 (a note
says so). Certificates are 0644. DIR is made 0750; its parent must exist.

Runs as any user. Never overwrites a key or certificate: it says "ok: ...
exists" instead. To renew, move the old certificate (and key, if you want a
new one) away, run again and restart the services.

  --dir DIR   where the files are (default $DEFAULT_DIR)
  --dry-run   print what would be made, and make nothing
  --help      this text
EOF
}

die() {
    printf '%s: error: %s\n' "$PROG" "$*" >&2
    exit 1
}

DIR=$DEFAULT_DIR
DRY_RUN=0
ARGS=()
while (($#)); do
    case $1 in
        --dir)
            (($# >= 2)) || die "--dir needs a directory"
            DIR=$2
            shift
            ;;
        --dir=*) DIR=${1#--dir=} ;;
        --dry-run) DRY_RUN=1 ;;
        -h | --help)
            usage
            exit 0
            ;;
        --)
            shift
            ARGS+=("$@")
            break
            ;;
        -*) die "unknown option: $1 (see --help)" ;;
        *) ARGS+=("$1") ;;
    esac
    shift
done
set -- "${ARGS[@]}"

is_ipv4() {
    local part
    local -a parts
    [[ $1 =~ ^(0|[1-9][0-9]{0,2})(\.(0|[1-9][0-9]{0,2})){3}$ ]] || return 1
    IFS=. read -ra parts <<<"$1"
    for part in "${parts[@]}"; do
        ((part <= 255)) || return 1
    done
}

# Eight groups of 1-4 hex digits, or fewer around one "::"; an IPv4 tail counts as two.
is_ipv6() {
    local address=$1 last group head tail count=0
    local -a groups
    [[ $address == *:* && $address =~ ^[0-9A-Fa-f:.]+$ ]] || return 1
    if [[ $address == *.* ]]; then
        last=${address##*:}
        is_ipv4 "$last" || return 1
        address="${address%"$last"}0:0"
    fi
    [[ $address == :* && $address != ::* ]] && return 1
    [[ $address == *: && $address != *:: ]] && return 1
    [[ $address == *::*::* || $address == *:::* ]] && return 1
    if [[ $address == *::* ]]; then
        head=${address%%::*}
        tail=${address#*::}
    else
        head=$address
        tail=""
    fi
    for part in "$head" "$tail"; do
        [[ -n $part ]] || continue
        IFS=: read -ra groups <<<"$part"
        for group in "${groups[@]}"; do
            [[ $group =~ ^[0-9A-Fa-f]{1,4}$ ]] || return 1
            count=$((count + 1))
        done
    done
    if [[ $address == *::* ]]; then
        ((count <= 7))
    else
        ((count == 8))
    fi
}

is_hostname() {
    [[ $1 =~ ^.{1,253}$ ]] || return 1
    [[ $1 =~ ^[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?(\.[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?)*$ ]] || return 1
    # Digits and dots only: a mistyped IPv4 address, not a name.
    [[ ! $1 =~ ^[0-9.]+$ ]]
}

# "IP:..." or "DNS:..." for a subjectAltName, or a refusal naming the address.
san_entry() {
    local address=$1
    if is_ipv4 "$address" || is_ipv6 "$address"; then
        [[ -n ${address//[0:.]/} ]] ||
            die "server: '$address' is a wildcard address; give the one address API hosts connect to"
        printf 'IP:%s' "$address"
    elif is_hostname "$address"; then
        printf 'DNS:%s' "$address"
    else
        die "server: '$address' is neither an IP address nor a host name"
    fi
}

(($#)) || die "say what to make: ca, server ADDRESS... or client NAME (see --help)"
COMMAND=$1
shift
SANS=()
case $COMMAND in
    ca) (($# == 0)) || die "ca takes no arguments, got: $*" ;;
    server)
        (($#)) || die "server needs at least one ADDRESS: the IP address or name API hosts connect to"
        for address in "$@"; do
            SANS+=("$(san_entry "$address")") || exit 1
        done
        ;;
    client{%- if cookiecutter.database == "postgresql" %} | database-client{%- endif %})
        (($# == 1)) || die "$COMMAND needs exactly one NAME, got $# arguments"
        [[ $1 =~ ^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$ ]] ||
            die "$COMMAND: '$1' is not a valid NAME (letters, digits, '.', '_' and '-'; at most 64)"
        ;;
{%- if cookiecutter.database == "postgresql" %}
    database)
        (($#)) || die "database needs at least one ADDRESS: the IP address or name internal service hosts connect to"
        for address in "$@"; do
            SANS+=("$(san_entry "$address")") || exit 1
        done
        ;;
{%- endif %}
    *) die "unknown command: $COMMAND (ca, server{%- if cookiecutter.database == "postgresql" %}, client, database or database-client{%- else %} or client{%- endif %}; see --help)" ;;
esac

command -v openssl >/dev/null || die "openssl is not installed (apt-get install openssl)"
[[ -n $DIR ]] || die "--dir needs a directory"
[[ $DIR == / ]] || DIR=${DIR%/}
[[ ! -L $DIR ]] || die "$DIR is a symbolic link; give the real directory"
[[ ! -e $DIR || -d $DIR ]] || die "$DIR exists and is not a directory"
if [[ ! -d $DIR ]]; then
    parent=$(dirname -- "$DIR")
    [[ -d $parent ]] || die "$parent does not exist: make it first (deploy/setup-user.sh makes /etc/$PROJECT)"
    ((DRY_RUN)) || [[ -w $parent ]] || die "cannot create $DIR: $parent is not writable by $(id -un)"
else
    ((DRY_RUN)) || [[ -w $DIR ]] || die "$DIR is not writable by $(id -un)"
fi
DIR=$(cd -- "$(dirname -- "$DIR")" && pwd -P)/$(basename -- "$DIR")
DIR=${DIR//\/\//\/}

# Keys other than the CA's are for a service: readable by its group where that can be arranged.
KEY_GROUP=""
if (($(id -u) == 0)) && getent group "$SERVICE_GROUP" >/dev/null; then
    KEY_GROUP=$SERVICE_GROUP
fi

WORK=""
cleanup() {
    [[ -z $WORK ]] || rm -rf -- "$WORK"
}
trap cleanup EXIT

# Run openssl; on failure, one line with the first thing it complained about.
run_openssl() {
    local what=$1 error
    shift
    if ! openssl "$@" 2>"$WORK/openssl.err" >/dev/null; then
        error=$(grep -m 1 -v '^\s*$' "$WORK/openssl.err" || true)
        die "openssl could not $what: ${error:-no message}"
    fi
}

ensure_dir() {
    if [[ -d $DIR ]]; then
        echo "ok: $DIR exists"
    elif ((DRY_RUN)); then
        echo "would create: $DIR (0750${KEY_GROUP:+, group $KEY_GROUP})"
    else
        mkdir -m 0750 -- "$DIR"
        [[ -z $KEY_GROUP ]] || chgrp -- "$KEY_GROUP" "$DIR"
        echo "created: $DIR (0750${KEY_GROUP:+, group $KEY_GROUP})"
    fi
    if ((!DRY_RUN)); then
        # Scratch space next to the files, so finished ones are linked in atomically.
        WORK=$(mktemp -d -- "$DIR/.pki.XXXXXX")
    fi
}

# Put a finished file in place; ln never replaces an existing one.
install_file() {
    local source=$1 target=$2
    ln -- "$source" "$target" 2>/dev/null || die "$target appeared while it was being made; run again"
}

same_key() {
    local from_cert from_key
    from_cert=$(openssl x509 -noout -pubkey -in "$1" 2>/dev/null) || return 1
    from_key=$(openssl pkey -pubout -in "$2" 2>/dev/null) || return 1
    [[ -n $from_cert && $from_cert == "$from_key" ]]
}

# A key and its certificate either both exist and match, or the certificate is missing.
check_pair() {
    local key=$1 cert=$2 path
    for path in "$key" "$cert"; do
        [[ ! -L $path ]] || die "$path is a symbolic link; move it away"
        [[ ! -e $path || -f $path ]] || die "$path exists and is not a regular file"
    done
    if [[ -e $cert && ! -e $key ]]; then
        die "$cert exists without its key $key: move it away to make a new pair"
    fi
    if [[ -e $cert ]] && ! same_key "$cert" "$key"; then
        die "$cert does not belong to $key (or one cannot be read): move them away to make a new pair"
    fi
}

make_key() {
    local key=$1 mode=$2 group=$3 what
    what="EC P-256 private key, $mode${group:+, group $group}"
    if [[ -e $key ]]; then
        echo "ok: $key exists"
        return
    fi
    if ((DRY_RUN)); then
        echo "would create: $key ($what)"
        return
    fi
    run_openssl "make the key $key" genpkey -algorithm EC \
        -pkeyopt ec_paramgen_curve:P-256 -pkeyopt ec_param_enc:named_curve -out "$WORK/key.pem"
    [[ -z $group ]] || chgrp -- "$group" "$WORK/key.pem"
    chmod "$mode" "$WORK/key.pem"
    install_file "$WORK/key.pem" "$key"
    rm -f -- "$WORK/key.pem"
    echo "created: $key ($what)"
    if [[ $mode == 0600 && $key != "$DIR/ca.key" ]]; then
        echo "note: $key is 0600, readable by $(id -un) alone: not root, or no group $SERVICE_GROUP here." \
            "Where the service uses it, make it root:$SERVICE_GROUP 0640."
    fi
}

note_expiry() {
    local cert=$1
    if ! openssl x509 -noout -checkend $((RENEW_WARNING_DAYS * 86400)) -in "$cert" >/dev/null; then
        echo "note: $cert expires within $RENEW_WARNING_DAYS days ($(openssl x509 -noout -enddate -in "$cert")): move it away and run again"
    fi
}

# Finish a certificate made in $WORK/cert.pem.
place_cert() {
    local cert=$1 what=$2
    chmod 0644 "$WORK/cert.pem"
    install_file "$WORK/cert.pem" "$cert"
    rm -f -- "$WORK/cert.pem"
    echo "created: $cert ($what, 0644)"
}

join() {
    local IFS=,
    printf '%s' "$*"
}

serial() {
    printf '0x%s' "$(openssl rand -hex 16)"
}

make_ca() {
    local key="$DIR/ca.key" cert="$DIR/ca.crt" what
    what="self-signed CA, $CA_DAYS days"
    check_pair "$key" "$cert"
    ensure_dir
    # The CA key never leaves root (or whoever runs this): 0600 always.
    make_key "$key" 0600 ""
    if [[ -e $cert ]]; then
        echo "ok: $cert exists"
        note_expiry "$cert"
        return
    fi
    if ((DRY_RUN)); then
        echo "would create: $cert ($what)"
        return
    fi
    cat >"$WORK/ca.cnf" <<EOF
[req]
distinguished_name = dn
prompt = no
x509_extensions = ca_ext

[dn]
CN = $PROJECT internal CA

[ca_ext]
basicConstraints = critical, CA:TRUE, pathlen:0
keyUsage = critical, keyCertSign, cRLSign
subjectKeyIdentifier = hash
EOF
    run_openssl "make the CA certificate" req -new -x509 -config "$WORK/ca.cnf" -key "$key" \
        -sha256 -days "$CA_DAYS" -set_serial "$(serial)" -out "$WORK/cert.pem"
    place_cert "$cert" "$what"
}

require_ca() {
    [[ -f $DIR/ca.key && -f $DIR/ca.crt ]] ||
        die "no CA in $DIR (ca.key and ca.crt): run '$PROG --dir $DIR ca' first"
}

# make_leaf NAME CN EXTENDED_KEY_USAGE [SAN...]: DIR/NAME.key and DIR/NAME.crt signed by the CA.
make_leaf() {
    local name=$1 cn=$2 usage=$3 key cert mode group what
    shift 3
    key="$DIR/$name.key"
    cert="$DIR/$name.crt"
    mode=0600
    group=""
    if [[ -n $KEY_GROUP ]]; then
        mode=0640
        group=$KEY_GROUP
    fi
    require_ca
    check_pair "$key" "$cert"
    ensure_dir
    make_key "$key" "$mode" "$group"
    what="CN=$cn, $usage${1:+, $(join "$@")}, $CERT_DAYS days"
    if [[ -e $cert ]]; then
        check_names "$cert" "$@"
        echo "ok: $cert exists"
        note_expiry "$cert"
    elif ((DRY_RUN)); then
        echo "would create: $cert ($what)"
    else
        run_openssl "make the request for $cert" req -new -key "$key" -subj "/CN=$cn" \
            -out "$WORK/request.csr"
        {
            echo "basicConstraints = critical, CA:FALSE"
            echo "keyUsage = critical, digitalSignature"
            echo "extendedKeyUsage = $usage"
            echo "subjectKeyIdentifier = hash"
            echo "authorityKeyIdentifier = keyid"
            if (($#)); then
                echo "subjectAltName = $(join "$@")"
            fi
        } >"$WORK/leaf.ext"
        run_openssl "sign $cert" x509 -req -in "$WORK/request.csr" -CA "$DIR/ca.crt" \
            -CAkey "$DIR/ca.key" -set_serial "$(serial)" -days "$CERT_DAYS" -sha256 \
            -extfile "$WORK/leaf.ext" -out "$WORK/cert.pem"
        place_cert "$cert" "$what"
    fi
}

# An existing server certificate is kept only if it still covers every address asked for.
check_names() {
    local cert=$1 entry option value
    shift
    for entry in "$@"; do
        value=${entry#*:}
        option=-checkhost
        [[ $entry == IP:* ]] && option=-checkip
        openssl x509 -noout -in "$cert" "$option" "$value" | grep -q ' does match' ||
            die "$cert exists but is not valid for $value: move $cert away to make one for the addresses given"
    done
}

print_settings() {
    local where=$1 cert=$2 key=$3
    echo
    echo "Set on $where, in /etc/$PROJECT/$PROJECT.env:"
    echo "  ${PREFIX}_INTERNAL_TLS_CA=$DIR/ca.crt"
    echo "  ${PREFIX}_INTERNAL_TLS_CERT=$cert"
    echo "  ${PREFIX}_INTERNAL_TLS_KEY=$key"
    if [[ $DIR != "$DEFAULT_DIR" ]]; then
        echo "(paths as made here; where you copy the files to $DEFAULT_DIR, use that directory)"
    fi
}

case $COMMAND in
    ca)
        make_ca
        echo
        echo "Next: '$PROG server ADDRESS...' for the internal host and '$PROG client NAME' per API host."
        echo "$DIR/ca.key signs them and is needed nowhere else: keep it offline afterwards."
        ;;
    server)
        make_leaf server "$PROJECT internal service" serverAuth "${SANS[@]}"
        print_settings "the internal host" "$DIR/server.crt" "$DIR/server.key"
        echo "That host needs ca.crt, server.crt and server.key."
        ;;
    client)
        make_leaf "client-$1" "$1" clientAuth
        print_settings "the API host $1" "$DIR/client-$1.crt" "$DIR/client-$1.key"
        echo "That host needs ca.crt, client-$1.crt and client-$1.key (root:$SERVICE_GROUP 0640) in $DEFAULT_DIR (0750, group $SERVICE_GROUP)."
        ;;
{%- if cookiecutter.database == "postgresql" %}
    database)
        make_leaf database "$PROJECT database" serverAuth "${SANS[@]}"
        echo
        echo "The database host needs ca.crt, database.crt and database.key in $DEFAULT_DIR:"
        echo "deploy/postgresql/setup.sh copies them where PostgreSQL reads them."
        ;;
    database-client)
        make_leaf "database-client-$1" "$DB_ROLE" clientAuth
        echo
        echo "The internal service host $1 needs ca.crt, database-client-$1.crt and"
        echo "database-client-$1.key (root:$SERVICE_GROUP 0640) in $DEFAULT_DIR; in its ${PREFIX}_DATABASE_URL:"
        echo "  sslmode=verify-full sslrootcert=$DEFAULT_DIR/ca.crt sslcert=$DEFAULT_DIR/database-client-$1.crt sslkey=$DEFAULT_DIR/database-client-$1.key"
        ;;
{%- endif %}
esac
if ((DRY_RUN)); then
    echo "dry run: nothing was written"
fi
