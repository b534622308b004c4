# shellcheck shell=bash
# {{ cookiecutter.project }}: the nftables half of deploy/firewall/apply.sh, which sources this file.
#
# Each backend defines the same functions, called by apply.sh: default_files,
# backend_check, backend_save, backend_apply, backend_restore and their plan_*
# twins for --dry-run; and FILE_COUNT, FILES_HELP and WHAT for its messages.
# apply.sh provides die, warn, HERE, PROJECT and state_dir.
# shellcheck disable=SC2034,SC2154 # names this file sets for apply.sh, or uses from it

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
