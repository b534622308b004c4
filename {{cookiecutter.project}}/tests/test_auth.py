"""Authentication and authorization: bearer tokens checked by the internal service, RFC 6750
challenges, scopes, expiry and revocation, the brute-force brake, and the request id."""

import os

import pytest

from {{ cookiecutter.__package }} import contract
from {{ cookiecutter.__package }}.api import create_app
from {{ cookiecutter.__package }}.internal.tokens import digest

from .support import PREFIX, ThreadedService, free_port

REALM = 'Bearer realm="{{ cookiecutter.project }}"'
WRITES = [
    ("POST", "/api/v1/items", {"title": "x"}),
    ("PUT", "/api/v1/items/1", {"title": "x"}),
    ("DELETE", "/api/v1/items/1", None),
]


def send(client, method, path, body=None, token=None, **headers):
    if token:
        headers["Authorization"] = f"Bearer {token}"
    return client.open(path, method=method, json=body, headers=headers)


def refused(response, status, code, challenge=None):
    """Our JSON error, the status, and the challenge when one is due."""
    assert response.status_code == status, response.get_data(as_text=True)
    assert response.get_json()["error"]["code"] == code
    if challenge is not None:
        assert response.headers["WWW-Authenticate"] == challenge
    return response.get_json()["error"]


@pytest.mark.parametrize(("method", "path", "body"), WRITES)
def test_an_anonymous_write_gets_401_with_the_challenge(anonymous, method, path, body):
    refused(send(anonymous, method, path, body), 401, "unauthorized", REALM)


@pytest.mark.parametrize(
    ("body", "content_type"),
    [("x", "text/plain"), ('{"title": ', "application/json"), ("[]", "application/json")],
)
def test_an_anonymous_write_is_401_whatever_its_body(anonymous, body, content_type):
    """Who is calling is known before any body is read or judged."""
    response = anonymous.post("/api/v1/items", data=body, content_type=content_type)
    refused(response, 401, "unauthorized", REALM)


def test_an_anonymous_read_gets_401_when_anonymous_reads_are_off(anonymous):
    for path in ("/api/v1/items", "/api/v1/items/1"):
        refused(anonymous.get(path), 401, "unauthorized", REALM)


def test_health_ready_and_the_document_need_no_token(anonymous):
    for path in ("/api/v1/health", "/api/v1/ready", "/api/v1/openapi.json", "/"):
        assert anonymous.get(path).status_code == 200, path


def test_anonymous_reads_let_gets_through_but_never_writes(internal_service, monkeypatch):
    monkeypatch.setenv(f"{PREFIX}_ANONYMOUS_READS", "true")
    service = ThreadedService(internal_service.settings | {"ANONYMOUS_READS": True})
    try:
        app = create_app({"INTERNAL_ADDRESS": service.address})
        client = app.test_client()
        assert client.get("/api/v1/items").status_code == 200
        for method, path, body in WRITES:
            refused(send(client, method, path, body), 401, "unauthorized", REALM)
        operation = app.api_doc["paths"]["/api/v1/items"]
        assert operation["get"]["security"] == [{"bearer": []}, {}]
        assert operation["post"]["security"] == [{"bearer": []}]
    finally:
        service.stop()


def test_a_token_without_the_write_scope_gets_403_naming_it(client, internal_service):
    reader = internal_service.token(["items:read"])
    assert send(client, "GET", "/api/v1/items", token=reader).status_code == 200
    challenge = f'{REALM}, error="insufficient_scope", scope="items:write"'
    response = send(client, "POST", "/api/v1/items", {"title": "x"}, reader)
    error = refused(response, 403, "insufficient_scope", challenge)
    assert "items:write" in error["message"]


INVALID = f'{REALM}, error="invalid_token"'


def test_expired_revoked_unknown_and_malformed_tokens_get_the_same_401(client, internal_service):
    expired = internal_service.token()
    revoked = internal_service.token()
    with internal_service.storage.transaction(write=True) as db:
        past = "2000-01-01T00:00:00.000+00:00"
        db.run("UPDATE tokens SET expires_at = ? WHERE hash = ?", (past, digest(expired)))
        db.run("UPDATE tokens SET revoked = TRUE WHERE hash = ?", (digest(revoked),))
    unknown = contract.new_token()
    malformed = unknown[:-1] + ("A" if unknown[-1] != "A" else "B")
    errors = [
        refused(send(client, "GET", "/api/v1/items", token=bad), 401, "invalid_token", INVALID)
        for bad in (expired, revoked, unknown, malformed, "not-even-close")
    ]
    # Nothing tells a revoked token from one that never existed.
    assert len({error["message"] for error in errors}) == 1


def test_revocation_takes_effect_on_the_very_next_request(client, internal_service, token):
    assert client.get("/api/v1/items").status_code == 200
    with internal_service.storage.transaction(write=True) as db:
        db.run("UPDATE tokens SET revoked = TRUE")
    refused(client.get("/api/v1/items"), 401, "invalid_token", INVALID)


def test_a_bad_checksum_is_refused_without_the_internal_service():
    app = create_app({"INTERNAL_ADDRESS": f"127.0.0.1:{free_port()}"})
    token = contract.new_token()
    bad = token[:-1] + ("A" if token[-1] != "A" else "B")
    response = send(app.test_client(), "GET", "/api/v1/items", token=bad)
    # 401, not the 503 that asking the stopped service would give.
    refused(response, 401, "invalid_token", INVALID)


@pytest.mark.parametrize("header", ["Basic dXNlcjpwYXNz", "Bearer", "Bearer  ", "Token abc"])
def test_a_header_that_is_not_a_bearer_token_gets_401(anonymous, header):
    response = anonymous.get("/api/v1/items", headers={"Authorization": header})
    assert response.status_code == 401
    assert response.headers["WWW-Authenticate"].startswith(REALM)


def test_the_token_format_carries_its_own_checksum():
    token = contract.new_token()
    assert contract.well_formed(token) and contract.TOKEN_PATTERN.fullmatch(token)
    assert len(token) == contract.TOKEN_LENGTH
    assert token.startswith("{{ cookiecutter.__package }}_")
    flipped = [token[:i] + ("x" if token[i] != "x" else "y") + token[i + 1 :] for i in (11, -1)]
    assert not any(contract.well_formed(bad) for bad in flipped)


def test_the_api_never_keeps_the_admin_secret(app):
    # The test environment sets it, as a developer's .env does for both processes.
    assert app.config["ADMIN_TOKEN"] == ""
    assert f"{PREFIX}_ADMIN_TOKEN" not in os.environ


def test_the_document_declares_the_bearer_scheme_on_every_protected_operation(client):
    document = client.get("/api/v1/openapi.json").get_json()
    assert document["components"]["securitySchemes"]["bearer"]["scheme"] == "bearer"
    for path, item in document["paths"].items():
        for method, operation in item.items():
            # Every route of a resource; the service's own need no token.
            protected = path not in ("/api/v1/health", "/api/v1/ready")
            assert ("security" in operation) == protected, (method, path)
            if protected:
                assert operation["security"] == [{"bearer": []}]
                assert {"401", "403", "429"} <= set(operation["responses"]), (method, path)


def test_every_answer_carries_a_request_id_and_the_proxys_is_kept(client):
    made = client.get("/api/v1/health")
    assert len(made.headers["X-Request-ID"]) == 32
    kept = client.get("/api/v1/health", headers={"X-Request-ID": "nginx-0123456789abcdef"})
    assert kept.headers["X-Request-ID"] == "nginx-0123456789abcdef"
    for bad in ("short", "has spaces in it", "x" * 200, "bad\u00e9id-0123456789"):
        answer = client.get("/api/v1/health", headers={"X-Request-ID": bad})
        assert answer.headers["X-Request-ID"] != bad
    # Only the proxy may name the request: a direct client cannot.
    direct = client.get("/api/v1/health", headers={"X-Request-ID": "forged-0123456789"},
                        environ_base={"REMOTE_ADDR": "127.0.0.2"})  # fmt: skip
    assert direct.headers["X-Request-ID"] != "forged-0123456789"


def test_no_token_is_ever_stored_or_logged(client, internal_service, own_store, caplog):
    made = [internal_service.token() for _ in range(3)]
    for token in made:
        send(client, "POST", "/api/v1/items", {"title": "t"}, token)
        send(client, "GET", "/api/v1/items/1", token=token)
    send(client, "GET", "/api/v1/items", token=contract.new_token())
    # The store's every byte: SQLite's files, or PostgreSQL's pg_dump of the database.
    stored = own_store.stored()
    for token in made:
        # Its hash is there: the bytes searched are the store's.
        assert digest(token).encode() in stored
        assert token.encode() not in stored
        assert token not in caplog.text
