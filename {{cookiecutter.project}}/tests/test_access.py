"""What each connection may run, the brute-force brake, and the audit trail, on the real service."""

import time

import pytest

from {{ cookiecutter.__package }} import contract
from {{ cookiecutter.__package }}.api import create_app
from {{ cookiecutter.__package }}.internal_client import InternalClient, OperationFailed

from .support import ADMIN, TOKEN, ThreadedService

ADMIN_CALLS = [
    (contract.tokens.create, {"name": "x", "scopes": ["items:read"], "expires_days": 1}),
    (contract.tokens.list, {}),
    (contract.tokens.revoke, {"id": 1}),
    (contract.audit.list, {}),
]


@pytest.mark.parametrize(("operation", "args"), ADMIN_CALLS, ids=lambda value: str(value)[:30])
def test_the_apis_secret_opens_no_admin_operation(internal_service, operation, args):
    client = InternalClient(internal_service.address, TOKEN)
    try:
        with pytest.raises(OperationFailed) as caught:
            client.call(operation, args)
        assert caught.value.code == "forbidden"
    finally:
        client.close()


def test_the_admin_secret_opens_admin_operations_and_nothing_else(internal_service):
    admin = InternalClient(internal_service.address, ADMIN)
    try:
        made = admin.call(contract.tokens.create, ADMIN_CALLS[0][1])
        assert contract.well_formed(made["token"])
        with pytest.raises(OperationFailed) as caught:
            admin.call(contract.items.list, {}, {"token": made["token"]})
        assert caught.value.code == "forbidden"
    finally:
        admin.close()


@pytest.fixture
def braked(settings):
    """A service that allows 3 failures in a 1.5 s window, and an API before it."""
    service = ThreadedService({**settings, "AUTH_FAILURES": 3, "AUTH_WINDOW": 1.5})
    app = create_app({"INTERNAL_ADDRESS": service.address})
    yield service, app.test_client()
    app.extensions["internal_client"].close()
    service.stop()


def get_items(client, token, address="203.0.113.7"):
    # As nginx sends it: the client's address in X-Forwarded-For, from the local proxy.
    headers = {"Authorization": f"Bearer {token}", "X-Forwarded-For": address}
    return client.get("/api/v1/items", headers=headers)


def test_the_brake_trips_at_the_threshold_and_lets_go_after_the_window(braked):
    service, client = braked
    good = service.token()
    for _ in range(3):
        assert get_items(client, contract.new_token()).status_code == 401
    tripped = get_items(client, contract.new_token())
    assert tripped.status_code == 429 and int(tripped.headers["Retry-After"]) >= 1
    assert tripped.get_json()["error"]["code"] == "too_many_requests"
    # Even a good token waits: the address is refused before any lookup.
    assert get_items(client, good).status_code == 429
    # Another address is not held back by this one.
    assert get_items(client, good, "198.51.100.9").status_code == 200
    time.sleep(1.6)
    assert get_items(client, good).status_code == 200


def audit_rows(service):
    admin = InternalClient(service.address, ADMIN)
    try:
        return admin.call(contract.audit.list, {"limit": 1000})["entries"]
    finally:
        admin.close()


def test_each_write_leaves_one_audit_row_with_its_token_and_request(client, internal_service):
    token_id = 1  # the client fixture's token, the service's first
    headers = {"X-Request-ID": "audit-test-0000001"}
    created = client.post("/api/v1/items", json={"title": "audited"}, headers=headers)
    item_id = created.get_json()["id"]
    client.get(f"/api/v1/items/{item_id}")
    client.put(f"/api/v1/items/{item_id}", json={"title": "again"})
    client.delete(f"/api/v1/items/{item_id}")
    client.delete(f"/api/v1/items/{item_id}")
    writes = [row for row in audit_rows(internal_service) if row["operation"].startswith("items.")]
    assert [(row["operation"], row["outcome"]) for row in writes] == [
        ("items.create", "ok"),
        ("items.update", "ok"),
        ("items.delete", "ok"),
        ("items.delete", "not_found"),
    ]
    assert {row["token_id"] for row in writes} == {token_id}
    assert {row["target_id"] for row in writes} == {item_id}
    assert writes[0]["request_id"] == "audit-test-0000001"
    assert all(row["actor"] == "token" and row["client"] == "127.0.0.1" for row in writes)


def test_admin_actions_are_audited_and_rows_are_never_changed(internal_service):
    admin = InternalClient(internal_service.address, ADMIN)
    try:
        made = admin.call(contract.tokens.create, ADMIN_CALLS[0][1])
        admin.call(contract.tokens.revoke, {"id": made["id"]})
    finally:
        admin.close()
    rows = audit_rows(internal_service)
    actions = [(row["operation"], row["target_id"], row["actor"]) for row in rows]
    assert ("tokens.create", made["id"], "admin") in actions
    assert ("tokens.revoke", made["id"], "admin") in actions
    # No operation of the contract edits or deletes the audit trail.
    assert {name for name in contract.OPERATIONS if name.startswith("audit.")} == {"audit.list"}
