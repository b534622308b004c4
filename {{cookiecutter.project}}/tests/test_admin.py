"""The admin command, run as a user runs it, against the real internal service."""

import os
import subprocess
import sys

import pytest

from {{ cookiecutter.__package }} import contract

from .support import ADMIN, PREFIX

PROGRAM = "{{ cookiecutter.project }}-admin"


@pytest.fixture
def admin(internal_service):
    """admin(*args) runs `python -m PACKAGE.admin ARGS` against the test's service."""

    def run(*args, **env):
        full = {**os.environ, f"{PREFIX}_INTERNAL_ADDRESS": internal_service.address}
        # The API test client drops the admin secret from this process at start.
        full[f"{PREFIX}_ADMIN_TOKEN"] = ADMIN
        full.update({f"{PREFIX}_{key}": value for key, value in env.items()})
        command = [sys.executable, "-m", "{{ cookiecutter.__package }}.admin", *args]
        return subprocess.run(command, env=full, capture_output=True, text=True, timeout=60)

    return run


def create(admin, *scopes, name="ci"):
    arguments = [item for scope in scopes for item in ("--scope", scope)]
    return admin("tokens", "create", "--name", name, *arguments)


def test_create_prints_the_token_alone_on_the_last_line_and_it_works(admin, anonymous):
    made = create(admin, "items:read", "items:write")
    assert made.returncode == 0, made.stderr
    token = made.stdout.splitlines()[-1]
    assert contract.well_formed(token)
    assert "shown this once" in made.stderr
    answer = anonymous.get("/api/v1/items", headers={"Authorization": f"Bearer {token}"})
    assert answer.status_code == 200


def test_list_shows_each_token_by_its_prefix_never_the_token(admin):
    token = create(admin, "items:read", name="reader").stdout.splitlines()[-1]
    listed = admin("tokens", "list")
    assert listed.returncode == 0, listed.stderr
    header, *rows = listed.stdout.splitlines()
    assert header.split("\t") == [
        "id", "name", "scopes", "expires_at", "last_used_at", "prefix", "revoked",
    ]  # fmt: skip
    assert token not in listed.stdout
    fields = rows[0].split("\t")
    assert fields[1:3] == ["reader", "items:read"] and fields[4] == "-"
    assert token.startswith(fields[5].removesuffix("...")) and fields[6] == "no"


def test_revoke_stops_the_token_on_the_next_request(admin, anonymous):
    token = create(admin, "items:read").stdout.splitlines()[-1]
    headers = {"Authorization": f"Bearer {token}"}
    assert anonymous.get("/api/v1/items", headers=headers).status_code == 200
    token_id = admin("tokens", "list").stdout.splitlines()[1].split("\t")[0]
    revoked = admin("tokens", "revoke", token_id)
    assert revoked.returncode == 0 and revoked.stdout == f"token {token_id} is revoked\n"
    assert anonymous.get("/api/v1/items", headers=headers).status_code == 401


def test_audit_lists_the_admin_actions_oldest_first(admin):
    create(admin, "items:read")
    trail = admin("audit", "--since", "2000-01-01T00:00:00Z", "--limit", "10")
    assert trail.returncode == 0, trail.stderr
    header, *rows = trail.stdout.splitlines()
    assert header.startswith("at\ttoken_id\tactor")
    fields = rows[-1].split("\t")
    expected = ("admin", "127.0.0.1", "tokens.create", "ok")
    assert (fields[2], fields[3], fields[5], fields[7]) == expected


@pytest.mark.parametrize(
    ("args", "named"),
    [
        (["tokens", "create", "--name", "x", "--scope", "items:delete"], "--scope"),
        (["tokens", "create", "--name", "", "--scope", "items:read"], "--name"),
        (["tokens", "create", "--scope", "items:read"], "--name"),
        (["tokens", "create", "--name", "x", "--scope", "items:read", "--expires-days", "0"],
         "--expires-days"),
        (["tokens", "create", "--name", "x", "--scope", "items:read", "--expires-days", "soon"],
         "--expires-days"),
        (["tokens", "create", "--name", "x", "--scope", "items:read", "--expires-days", "400"],
         "expires_days"),
        (["tokens", "revoke", "three"], "id"),
        (["tokens", "revoke", "999"], "id"),
        (["audit", "--limit", "0"], "--limit"),
        (["audit", "--since", "yesterday"], "since"),
        (["tokens", "rename"], "action"),
    ],
)  # fmt: skip
def test_each_bad_argument_gets_one_line_naming_it(admin, args, named):
    result = admin(*args)
    assert result.returncode in (1, 2) and result.stdout == ""
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith(f"{PROGRAM}: ") and named in lines[0], lines[0]


def test_without_the_admin_secret_it_refuses_with_one_line(admin):
    result = admin("tokens", "list", ADMIN_TOKEN="")
    lines = result.stderr.strip().splitlines()
    assert result.returncode == 1 and len(lines) == 1
    assert f"{PREFIX}_ADMIN_TOKEN is missing" in lines[0]


def test_the_apis_secret_is_not_the_admin_secret(admin):
    result = admin("tokens", "list", ADMIN_TOKEN=os.environ[f"{PREFIX}_INTERNAL_TOKEN"])
    assert result.returncode == 1
    assert "refused our token" in result.stderr or "not on this connection" in result.stderr


def test_list_shows_a_tokens_last_use_once_it_is_written(admin, anonymous, internal_service):
    token = create(admin, "items:read").stdout.splitlines()[-1]
    headers = {"Authorization": f"Bearer {token}"}
    assert anonymous.get("/api/v1/items", headers=headers).status_code == 200
    # The use is written in the background, within seconds; here at once.
    internal_service.server.runner.last_use.flush()
    fields = admin("tokens", "list").stdout.splitlines()[1].split("\t")
    assert fields[4].startswith("20")
