"""`{{ cookiecutter.project }}-admin`: make, list and revoke API tokens; read the audit trail.

    {{ cookiecutter.project }}-admin tokens create --name NAME --scope SCOPE [--scope ...] [--expires-days N]
    {{ cookiecutter.project }}-admin tokens list
    {{ cookiecutter.project }}-admin tokens revoke ID
    {{ cookiecutter.project }}-admin audit [--since ISO-TIME] [--limit N]

It talks to the internal service as the API does, but shows ADMIN_TOKEN, the
secret the API never holds: only such a connection may run these operations.
Settings come from the environment ({{ cookiecutter.__package | upper }}_*), and from .env in development;
deployed, root runs it as /usr/local/sbin/{{ cookiecutter.project }}-admin, which reads the
root-only /etc/{{ cookiecutter.project }}/admin.env (README.md, Authentication).
A new token is printed once, alone on the last line of stdout, and never again.
"""

import argparse
import sys
import uuid

from . import config, contract, startup
from .internal_client import InternalClient, InternalError

PROGRAM = "{{ cookiecutter.project }}-admin"


class Parser(argparse.ArgumentParser):
    """argparse, but a mistake is one line naming the argument, and exit status 2."""

    def error(self, message):
        self.exit(2, f"{PROGRAM}: error: {message} (see --help)\n")


def parser():
    top = Parser(prog=PROGRAM, description="The API tokens and the audit trail.")
    commands = top.add_subparsers(dest="command", required=True, parser_class=Parser)
    tokens = commands.add_parser("tokens", help="make, list or revoke API tokens")
    actions = tokens.add_subparsers(dest="action", required=True, parser_class=Parser)
    create = actions.add_parser("create", help="make a token; it is printed once")
    create.add_argument("--name", required=True, help="what the token is for (1-100 characters)")
    known = ", ".join(sorted(contract.scopes()))
    create.add_argument(
        "--scope", action="append", required=True, help=f"one of {known} (repeat for more)"
    )
    create.add_argument("--expires-days", type=int, help="days it lasts (default TOKEN_DAYS)")
    actions.add_parser("list", help="every token: id, name, scopes, expiry, last use, prefix")
    revoke = actions.add_parser("revoke", help="revoke a token at once, everywhere")
    revoke.add_argument("id", type=int, help="the token's id, from tokens list")
    audit = commands.add_parser("audit", help="the audit trail, oldest first")
    audit.add_argument("--since", default="", help="from this ISO 8601 time on")
    audit.add_argument("--limit", type=int, default=100, help="the most rows, 1-1000 (default 100)")
    return top


def checked(options, settings):
    """The operation and its arguments, each checked here first: one line names a bad one."""
    if options.command == "audit":
        args = {"since": options.since, "limit": options.limit}
        return contract.audit.list, _check(contract.audit.list, args, {"limit": "--limit"})
    if options.action == "list":
        return contract.tokens.list, {}
    if options.action == "revoke":
        return contract.tokens.revoke, _check(contract.tokens.revoke, {"id": options.id}, {})
    days = options.expires_days if options.expires_days is not None else settings["TOKEN_DAYS"]
    args = {"name": options.name, "scopes": options.scope, "expires_days": days}
    names = {"name": "--name", "scopes": "--scope", "expires_days": "--expires-days"}
    return contract.tokens.create, _check(contract.tokens.create, args, names)


def _check(operation, args, names):
    try:
        return operation.check(args)
    except contract.ContractError as exc:
        field = names.get(exc.field, exc.field)
        message = exc.message.split(": ", 1)[-1]
        raise SystemExit(f"{PROGRAM}: error: {field}: {message}") from None


TOKEN_COLUMNS = ("id", "name", "scopes", "expires_at", "last_used_at", "prefix", "revoked")
AUDIT_COLUMNS = (
    "at", "token_id", "actor", "client", "request_id", "operation", "target_id", "outcome",
)  # fmt: skip


def _table(columns, rows):
    """Tab-separated, a header line first; a missing value is "-"."""
    print("\t".join(columns))
    for row in rows:
        print("\t".join("-" if row.get(key) is None else str(row[key]) for key in columns))


def show(operation, result):
    """The answer as lines for a terminal; a new token last, alone."""
    if operation is contract.tokens.create:
        scopes = " ".join(result["scopes"])
        print(f"id {result['id']}: {result['name']} ({scopes}), expires {result['expires_at']}")
        print("the token follows; it is shown this once and stored nowhere:", file=sys.stderr)
        print(result["token"])
    elif operation is contract.tokens.list:
        rows = [
            {**row, "scopes": ",".join(row["scopes"]), "prefix": row["prefix"] + "...",
             "revoked": "yes" if row["revoked"] else "no"}
            for row in result["tokens"]
        ]  # fmt: skip
        _table(TOKEN_COLUMNS, rows)
    elif operation is contract.tokens.revoke:
        print(f"token {result['id']} is revoked")
    else:
        _table(AUDIT_COLUMNS, result["entries"])


def main(argv=None):
    options = parser().parse_args(argv)
    config.load_dotenv()
    settings, tls_context = startup.admin()
    operation, args = checked(options, settings)
    as_admin = {**settings, "INTERNAL_TOKEN": settings["ADMIN_TOKEN"]}
    client = InternalClient.from_settings(as_admin, tls_context)
    try:
        result = client.call(operation, args, {"request": f"admin-{uuid.uuid4().hex}"})
    except InternalError as exc:
        raise SystemExit(f"{PROGRAM}: {operation.name} failed: {exc.message}") from None
    finally:
        client.close()
    show(operation, result)


if __name__ == "__main__":
    main()
