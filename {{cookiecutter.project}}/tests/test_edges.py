"""The API at its edges: one spelling per id, bare 204s, errors in our own words,
and writes that a retry cannot repeat."""

import pytest

from .support import rows

ODD_IDS = ["01", "0", "١", "１", "%D9%A1", "1.0", "+1", "1e3", " 1", "9" * 20, "-1"]


@pytest.mark.parametrize("spelling", ODD_IDS)
def test_an_id_has_one_spelling_and_any_other_is_404(client, spelling):
    assert client.post("/api/v1/items", json={"title": "one"}).status_code == 201
    assert client.get("/api/v1/items/1").status_code == 200
    for method in ("GET", "PUT", "DELETE"):
        response = client.open(f"/api/v1/items/{spelling}", method=method, json={"title": "x"})
        assert response.status_code == 404, (method, spelling)
        assert response.get_json()["error"]["code"] == "not_found"


def test_an_id_past_64_bits_is_refused_by_its_bound(client):
    response = client.get("/api/v1/items/9223372036854775808")
    assert response.status_code == 422 and response.get_json()["error"]["field"] == "id"


def test_a_delete_answers_a_bare_204(client):
    client.post("/api/v1/items", json={"title": "gone soon"})
    response = client.delete("/api/v1/items/1")
    assert response.status_code == 204 and response.data == b""
    assert "Content-Type" not in response.headers


def test_errors_are_in_our_own_words(client, app):
    missing = client.get("/api/v1/no-such-thing").get_json()["error"]["message"]
    assert missing == "no such resource"
    big = b'{"title": "' + b"x" * app.config["MAX_CONTENT_LENGTH"] + b'"}'
    too_large = client.post("/api/v1/items", data=big, content_type="application/json")
    message = too_large.get_json()["error"]["message"]
    assert message == f"the request body is larger than {app.config['MAX_CONTENT_LENGTH']} bytes"
    for text in (missing, message):
        assert "browser" not in text and "manually" not in text


KEY = {"Idempotency-Key": "3f1c9a52-6c1e-4d7e-9a4b-2d0e8b7c5a11"}


def test_a_post_repeated_with_its_key_makes_one_row(client, internal_service):
    first = client.post("/api/v1/items", json={"title": "once"}, headers=KEY)
    again = client.post("/api/v1/items", json={"title": "once"}, headers=KEY)
    assert first.status_code == again.status_code == 201
    assert again.get_json() == first.get_json()
    assert again.headers["Location"] == first.headers["Location"]
    assert rows(internal_service.storage) == 1


def test_the_same_key_with_another_body_is_refused(client, internal_service):
    client.post("/api/v1/items", json={"title": "once"}, headers=KEY)
    other = client.post("/api/v1/items", json={"title": "twice"}, headers=KEY)
    assert other.status_code == 422
    assert other.get_json()["error"]["field"] == "Idempotency-Key"
    assert rows(internal_service.storage) == 1


def test_a_key_belongs_to_its_token(client, anonymous, internal_service):
    client.post("/api/v1/items", json={"title": "mine"}, headers=KEY)
    other = {"Authorization": f"Bearer {internal_service.token()}", **KEY}
    theirs = anonymous.post("/api/v1/items", json={"title": "mine"}, headers=other)
    assert theirs.status_code == 201 and theirs.get_json()["id"] == 2


@pytest.mark.parametrize("key", ["short", "has space in it", "x" * 129, "ключ-0123456789"])
def test_a_malformed_key_gets_400_naming_it(client, key):
    response = client.post("/api/v1/items", json={"title": "x"}, headers={"Idempotency-Key": key})
    assert response.status_code == 400
    assert response.get_json()["error"]["field"] == "Idempotency-Key"


def test_a_retry_after_a_timeout_does_not_write_twice(client, internal_service, monkeypatch):
    """The write went through, but its answer never came back (a 504): the retry,
    with the same key, finds it done and answers as the first would have."""
    from {{ cookiecutter.__package }}.internal_client import InternalClient, InternalTimeout

    real = InternalClient._round_trip
    lost = []

    def lose_the_first_answer(self, conn, message):
        reply = real(self, conn, message)
        if message["op"] == "items.create" and not lost:
            lost.append(reply)
            self.close()
            raise InternalTimeout("the internal service did not answer in time")
        return reply

    monkeypatch.setattr(InternalClient, "_round_trip", lose_the_first_answer)
    timed_out = client.post("/api/v1/items", json={"title": "retried"}, headers=KEY)
    assert timed_out.status_code == 504
    retried = client.post("/api/v1/items", json={"title": "retried"}, headers=KEY)
    assert retried.status_code == 201 and retried.get_json() == lost[0]
    assert rows(internal_service.storage) == 1


def test_the_document_declares_the_key_on_every_post(client):
    document = client.get("/api/v1/openapi.json").get_json()
    parameters = document["paths"]["/api/v1/items"]["post"]["parameters"]
    assert [p["name"] for p in parameters if p["in"] == "header"] == ["Idempotency-Key"]
