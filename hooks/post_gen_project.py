"""Finish the generated project: write its secrets, drop the options not chosen.

Runs inside the new project directory, needs no network and no root. Answers
arrive as data (double ``tojson``, see pre_gen_project.py for why that is safe).
"""

import json
import os
import secrets
import shutil
import sys
from pathlib import Path

PROJECT = json.loads({{ cookiecutter.project | tojson | tojson }})
PACKAGE = json.loads({{ cookiecutter["__package"] | tojson | tojson }})
TRUSTED_CLIENTS = json.loads({{ cookiecutter.__trusted_clients | tojson | tojson }})
CHOSEN = {
    "firewall": json.loads({{ cookiecutter.firewall | tojson | tojson }}),
    "database": json.loads({{ cookiecutter.database | tojson | tojson }}),
}

# option -> choice -> paths (relative to the project) that only that choice
# needs. The paths of every choice not taken are removed. Add new options here.
OPTION_PATHS = {
    "firewall": {
        "nftables": ["deploy/firewall/nftables"],
        "ufw": ["deploy/firewall/ufw"],
        "iptables": ["deploy/firewall/iptables"],
    },
    # Each backend's store, its tests' helpers (tests/support.py imports the
    # chosen one), the tests of what only it does, and the database host's files.
    "database": {
        "sqlite": [
            f"src/{PACKAGE}/internal/sqlite.py",
            "tests/backend_sqlite.py",
            "tests/test_sqlite.py",
            "tests/test_group_commit.py",
        ],
        "postgresql": [
            f"src/{PACKAGE}/internal/postgresql.py",
            "tests/backend_postgresql.py",
            "tests/test_postgresql.py",
            "tests/test_instances.py",
            "deploy/postgresql",
            f"deploy/firewall/nftables/{PROJECT}-database.nft",
            "deploy/firewall/iptables/database.v4",
            "deploy/firewall/iptables/database.v6",
            "deploy/firewall/ufw/ufw-database-rules.sh",
        ],
    },
}

ENV_FILE = ".env"
TOKEN_BYTES = 48  # token_urlsafe(48) gives 64 characters


def write_env_file(project_dir):
    """Create .env with fresh secrets, mode 0600 from the start (no wider window)."""
    path = project_dir / ENV_FILE
    if path.is_symlink() or (path.exists() and not path.is_file()):
        print(f"error: {ENV_FILE} exists and is not a regular file; remove it", file=sys.stderr)
        sys.exit(1)
    if path.exists():
        # Regenerating over a project (--overwrite-if-exists): its token stays valid.
        os.chmod(path, 0o600)
        print(f"kept the existing {ENV_FILE} and its token", file=sys.stderr)
        return
    prefix = PACKAGE.upper()
    text = (
        "# Local secrets for development. Never commit this file (.gitignore has it).\n"
        f"{prefix}_INTERNAL_TOKEN={secrets.token_urlsafe(TOKEN_BYTES)}\n"
        "# The admin command's secret (tokens, audit). The API drops it when it starts.\n"
        f"{prefix}_ADMIN_TOKEN={secrets.token_urlsafe(TOKEN_BYTES)}\n"
    )
    if CHOSEN["database"] == "postgresql":
        # libpq's default socket and the OS user's role: a local server needs no password.
        # Quoted: honcho drops the spaces of an unquoted value.
        text += (
            "# The PostgreSQL database (README.md, PostgreSQL and several hosts); no password.\n"
            f'{prefix}_DATABASE_URL="host=/var/run/postgresql dbname={PACKAGE}"\n'
        )
    if TRUSTED_CLIENTS.strip():
        # Several hosts need mutual TLS; `honcho start` on one machine runs without it.
        text += (
            "# Development runs on one host; deployments set trusted clients and TLS\n"
            "# (README.md, Several hosts).\n"
            f"{prefix}_TRUSTED_CLIENTS=\n"
        )
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_NOFOLLOW", 0)
    descriptor = os.open(project_dir / ENV_FILE, flags, 0o600)
    with os.fdopen(descriptor, "w", encoding="utf-8") as env_file:
        env_file.write(text)
    # The umask can only narrow 0600; make sure nothing widened it either.
    os.chmod(project_dir / ENV_FILE, 0o600)


def remove_unchosen(project_dir):
    """Delete the files of every option value that was not chosen."""
    for option, choices in OPTION_PATHS.items():
        keep = set(choices.get(CHOSEN[option], []))
        for choice, paths in choices.items():
            if choice == CHOSEN[option]:
                continue
            for relative in paths:
                if relative in keep:
                    continue
                path = project_dir / relative
                if path.is_dir() and not path.is_symlink():
                    shutil.rmtree(path)
                elif path.exists() or path.is_symlink():
                    path.unlink()


def main():
    """Run the steps in the project directory cookiecutter starts us in."""
    project_dir = Path.cwd()
    for option, value in CHOSEN.items():
        if value not in OPTION_PATHS[option]:
            message = f"error: {option}={value!r} has no entry in OPTION_PATHS"
            print(message, file=sys.stderr)
            sys.exit(1)
    remove_unchosen(project_dir)
    write_env_file(project_dir)


if __name__ == "__main__":
    main()
