"""The public API against a real internal service on an ephemeral loopback port."""

import socket
import threading

import pytest

from {{ cookiecutter.__package }} import contract
from {{ cookiecutter.__package }}.api import create_app

from .support import free_port

TITLE_MAX = contract.items.fields["title"].max_length
BODY_MAX = contract.items.fields["body"].max_length
LIMIT_MAX = contract.PAGE_MAX


def assert_json_error(response, status, field=None):
    assert response.status_code == status
    assert response.mimetype == "application/json"
    text = response.get_data(as_text=True)
    assert "<" not in text and "Traceback" not in text
    error = response.get_json()["error"]
    assert error["code"] and error["message"]
    if field:
        assert error["field"] == field
        assert field in error["message"]
    return error


def create(client, title="first", body="text"):
    response = client.post("/api/v1/items", json={"title": title, "body": body})
    assert response.status_code == 201, response.get_data(as_text=True)
    return response


def test_health_answers_without_the_internal_service(settings):
    app = create_app({"INTERNAL_ADDRESS": f"127.0.0.1:{free_port()}"})
    response = app.test_client().get("/api/v1/health")
    assert response.status_code == 200
    assert response.get_json() == {"status": "ok"}


def test_ready_when_the_internal_service_answers(client):
    assert client.get("/api/v1/ready").get_json() == {"status": "ready"}


def test_ready_is_503_when_the_internal_service_is_down():
    app = create_app({"INTERNAL_ADDRESS": f"127.0.0.1:{free_port()}"})
    error = assert_json_error(app.test_client().get("/api/v1/ready"), 503)
    assert error["code"] == "internal_unavailable"


def test_create_answers_201_with_location_and_the_item(client):
    response = create(client, "hello", "world")
    item = response.get_json()
    assert response.headers["Location"] == f"/api/v1/items/{item['id']}"
    assert item["title"] == "hello" and item["body"] == "world"
    assert client.get(response.headers["Location"]).get_json() == item


def test_update_replaces_title_and_body(client):
    item_id = create(client).get_json()["id"]
    response = client.put(f"/api/v1/items/{item_id}", json={"title": "new"})
    assert response.status_code == 200
    assert response.get_json()["title"] == "new"
    assert response.get_json()["body"] == ""


def test_delete_answers_204_then_the_item_is_gone(client):
    item_id = create(client).get_json()["id"]
    assert client.delete(f"/api/v1/items/{item_id}").status_code == 204
    assert_json_error(client.get(f"/api/v1/items/{item_id}"), 404, "id")
    assert_json_error(client.delete(f"/api/v1/items/{item_id}"), 404, "id")
    assert_json_error(client.put(f"/api/v1/items/{item_id}", json={"title": "x"}), 404, "id")


def test_list_is_paginated_with_total(client):
    ids = [create(client, f"item {n}").get_json()["id"] for n in range(5)]
    page = client.get("/api/v1/items?limit=2&offset=1").get_json()
    assert [item["id"] for item in page["items"]] == ids[1:3]
    assert (page["total"], page["limit"], page["offset"]) == (5, 2, 1)
    assert client.get("/api/v1/items").get_json()["limit"] == 20


@pytest.mark.parametrize("query", ["limit=0", f"limit={LIMIT_MAX + 1}", "limit=ten", "offset=-1"])
def test_pagination_bounds_are_enforced(client, query):
    assert_json_error(client.get(f"/api/v1/items?{query}"), 422, query.split("=")[0])


def test_title_and_body_at_their_limits_are_accepted(client):
    create(client, "t" * TITLE_MAX, "b" * BODY_MAX)


@pytest.mark.parametrize(
    ("payload", "field"),
    [
        ({}, "title"),
        ({"title": ""}, "title"),
        ({"title": "t" * (TITLE_MAX + 1)}, "title"),
        ({"title": 42}, "title"),
        ({"title": "ok", "body": "b" * (BODY_MAX + 1)}, "body"),
        ({"title": "ok", "body": None}, "body"),
        ({"title": "ok", "owner": "me"}, "owner"),
    ],
)
def test_invalid_items_get_422_naming_the_field(client, payload, field):
    assert_json_error(client.post("/api/v1/items", json=payload), 422, field)


def test_a_body_that_is_not_an_object_gets_422(client):
    assert_json_error(client.post("/api/v1/items", json=["title"]), 422, "body")


def test_broken_json_gets_400(client):
    response = client.post(
        "/api/v1/items", data='{"title": ', headers={"Content-Type": "application/json"}
    )
    assert_json_error(response, 400, "body")


def test_wrong_content_type_gets_415(client):
    response = client.post("/api/v1/items", data="title=x", content_type="text/plain")
    assert_json_error(response, 415, "body")


def test_body_above_max_content_length_gets_413(client, app):
    oversize = app.config["MAX_CONTENT_LENGTH"] + 1
    response = client.post(
        "/api/v1/items",
        data=b'{"title": "' + b"x" * oversize + b'"}',
        content_type="application/json",
    )
    assert_json_error(response, 413)


def test_unknown_path_gets_json_404(client):
    assert_json_error(client.get("/api/v1/nothing-here"), 404)


def test_wrong_method_gets_json_405_with_allow(client):
    response = client.patch("/api/v1/items")
    assert_json_error(response, 405)
    assert "POST" in response.headers["Allow"]


def test_unexpected_exception_gets_json_500_without_traceback(internal_service):
    app = create_app({"INTERNAL_ADDRESS": internal_service.address})

    @app.get("/boom")
    def boom():
        raise RuntimeError("secret detail")

    response = app.test_client().get("/boom")
    error = assert_json_error(response, 500)
    assert "secret detail" not in response.get_data(as_text=True)
    assert error["code"] == "internal_server_error"


def silent_server():
    """A listener that accepts and never answers: the internal service hung."""
    listener = socket.create_server(("127.0.0.1", 0))
    accepted = []

    def accept():
        try:
            accepted.append(listener.accept()[0])
        except OSError:
            pass

    threading.Thread(target=accept, daemon=True).start()
    return listener, accepted


def bearer(token=None):
    """An Authorization header; a well-formed token unless told (the API checks no more)."""
    return {"Authorization": f"Bearer {token or contract.new_token()}"}


def test_a_hung_internal_service_gets_504():
    listener, accepted = silent_server()
    try:
        port = listener.getsockname()[1]
        app = create_app({"INTERNAL_ADDRESS": f"127.0.0.1:{port}", "INTERNAL_TIMEOUT": 0.3})
        response = app.test_client().get("/api/v1/items/1", headers=bearer())
        error = assert_json_error(response, 504)
        assert error["code"] == "internal_timeout"
    finally:
        listener.close()
        for conn in accepted:
            conn.close()


def test_an_internal_service_with_another_token_gets_502(internal_service):
    app = create_app({"INTERNAL_ADDRESS": internal_service.address, "INTERNAL_TOKEN": "x" * 40})
    assert_json_error(app.test_client().get("/api/v1/items/1", headers=bearer()), 502)


def test_openapi_document_is_generated_from_the_code(client):
    document = client.get("/api/v1/openapi.json").get_json()
    assert document["openapi"].startswith("3.")
    assert {"/api/v1/items", "/api/v1/items/{id}", "/api/v1/health"} <= set(document["paths"])
    assert {"get", "post"} <= set(document["paths"]["/api/v1/items"])
    schema = document["components"]["schemas"]["ItemIn"]["properties"]["title"]
    assert schema["maxLength"] == TITLE_MAX


def test_index_page_has_no_inline_script_or_style(client):
    response = client.get("/")
    html = response.get_data(as_text=True)
    assert response.status_code == 200 and response.mimetype == "text/html"
    assert '<script src="/static/app.js" defer></script>' in html
    assert "<style" not in html and "style=" not in html and "<script>" not in html
    assert client.get("/static/app.js").status_code == 200
