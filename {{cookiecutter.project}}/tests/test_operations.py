"""The operations of the internal service, run without any transport, and the contract they keep."""

import pytest

from {{ cookiecutter.__package }} import contract
from {{ cookiecutter.__package }}.internal import operations
from {{ cookiecutter.__package }}.internal.operations import Implementation, OperationError
from {{ cookiecutter.__package }}.internal.runner import Runner

from .support import open_storage


@pytest.fixture
def storage(settings):
    store = open_storage(settings)
    yield store
    store.close()


def run(storage, name, **args):
    """In process and without a gate: the operation itself, as the service runs it."""
    return Runner(storage).run(name, args)


def test_every_operation_of_the_contract_has_its_function():
    operations.load_units()
    assert set(operations.IMPLEMENTATIONS) == set(contract.OPERATIONS)
    for name, implementation in operations.IMPLEMENTATIONS.items():
        assert contract.OPERATIONS[name] is implementation.operation


def test_only_reads_and_replacements_are_marked_safe_to_retry():
    idempotent = {name for name, op in contract.OPERATIONS.items() if op.idempotent}
    assert {"service.ping", "items.get", "items.list", "items.update"} <= idempotent
    assert not {"items.create", "items.delete"} & idempotent


def test_operations_work_without_any_transport(storage):
    item = run(storage, "items.create", title="a", body="b")
    assert run(storage, "items.get", id=item["id"]) == item
    assert run(storage, "items.update", id=item["id"], title="c")["title"] == "c"
    assert run(storage, "items.list")["total"] == 1
    assert run(storage, "items.delete", id=item["id"]) == {"deleted": item["id"]}
    with pytest.raises(OperationError) as caught:
        run(storage, "items.get", id=item["id"])
    assert caught.value.code == "not_found"
    assert caught.value.message == f"id: item {item['id']} does not exist"


@pytest.mark.parametrize(
    ("name", "args", "code", "field"),
    [
        ("items.create", {"title": ""}, "invalid", "title"),
        ("items.create", {"title": "x" * 201}, "invalid", "title"),
        ("items.create", {"title": "x", "body": 5}, "invalid", "body"),
        ("items.get", {"id": "1"}, "invalid", "id"),
        ("items.get", {"id": True}, "invalid", "id"),
        ("items.get", {"id": 0}, "invalid", "id"),
        ("items.list", {"limit": 1000}, "invalid", "limit"),
        ("items.get", {}, "invalid_arguments", None),
        ("items.get", {"id": 1, "extra": 2}, "invalid_arguments", None),
        ("no.such", {}, "unknown_operation", None),
    ],
)
def test_operations_check_their_arguments_against_the_contract(storage, name, args, code, field):
    with pytest.raises(OperationError) as caught:
        run(storage, name, **args)
    assert caught.value.code == code
    assert caught.value.field == field


def test_a_write_that_fails_midway_leaves_nothing(storage, monkeypatch):
    def create_then_fail(db, title, body):
        db.run(
            "INSERT INTO items (title, body, created_at, updated_at) VALUES (?, ?, '', '')",
            (title, body),
        )
        raise RuntimeError("after the insert")

    failing = Implementation(contract.items.create, create_then_fail)
    monkeypatch.setitem(operations.IMPLEMENTATIONS, "items.create", failing)
    with pytest.raises(RuntimeError):
        run(storage, "items.create", title="never")
    monkeypatch.undo()
    assert run(storage, "items.list")["total"] == 0


def test_the_longest_reply_bounds_a_page_of_the_longest_rows():
    fields = contract.items.fields
    row = sum(4 * field.max_length for field in fields.values())
    assert contract.longest_reply() >= contract.PAGE_MAX * row
