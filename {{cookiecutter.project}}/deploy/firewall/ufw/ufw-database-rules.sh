#!/usr/bin/env bash
# {{ cookiecutter.project }}: whitelist of inbound traffic with ufw on the PostgreSQL database
# host: ssh, and 5432/tcp only from the internal service hosts. The rules of
# both kinds of host live in ufw-rules.sh; this file names the database host's,
# so that deploy/firewall/apply.sh, which loads one file per host, can load it
# with its rollback timer:
#   deploy/firewall/apply.sh --confirm-within 120 deploy/firewall/ufw/ufw-database-rules.sh
# It takes the same arguments (--dry-run, --help).
set -euo pipefail

exec bash -- "$(dirname -- "${BASH_SOURCE[0]}")/ufw-rules.sh" --database-host "$@"
