"""The API's client of the internal service: one connection per worker, kept, forked and renewed."""

import os

from {{ cookiecutter.__package }} import contract
from {{ cookiecutter.__package }}.internal_client import InternalClient

from .support import TOKEN, ThreadedService, client_for


def test_the_longest_page_of_items_reaches_the_client(internal_service):
    # 100 items of the longest title and body, every character 4 bytes of UTF-8:
    # an answer of about 4 MB, past the 1 MiB that any request may take.
    client = client_for(internal_service.address, api_token=internal_service.token())
    try:
        fields = contract.items.fields
        title = "\U0001f512" * fields["title"].max_length
        body = "\U0001f511" * fields["body"].max_length
        for _ in range(contract.PAGE_MAX):
            client.items.create(title=title, body=body)
        page = client.items.list(limit=contract.PAGE_MAX)
        assert len(page["items"]) == contract.PAGE_MAX
        assert {(item["title"], item["body"]) for item in page["items"]} == {(title, body)}
    finally:
        client.close()


def test_a_forked_child_opens_a_connection_of_its_own(internal_service):
    client = InternalClient(internal_service.address, TOKEN)
    try:
        client.call(contract.service.ping)
        parents = client._local.conn
        pid = os.fork()
        if pid == 0:
            # The child: it must not write into the parent's stream.
            code = 1
            try:
                if getattr(client._local, "conn", None) is None:
                    client.call(contract.service.ping)
                    code = 0 if client._local.conn is not parents else 1
            finally:
                os._exit(code)
        _, status = os.waitpid(pid, 0)
        assert os.waitstatus_to_exitcode(status) == 0
        # The parent's connection is still its own, in step.
        assert client._local.conn is parents
        assert client.call(contract.service.ping) == {"status": "ok"}
    finally:
        client.close()


def test_client_keeps_one_connection_and_reconnects_after_a_restart(settings, tmp_path):
    service = ThreadedService(settings)
    client = client_for(service.address, api_token=service.token())
    try:
        item = client.items.create(title="kept")
        first = client._local.conn.sock
        assert client.items.get(item["id"]) == item
        assert client._local.conn.sock is first
        service.stop()
        service = ThreadedService(settings, port=service.port)
        # The old connection is dead: a read is retried, a write checks before sending.
        assert client.items.get(item["id"]) == item
        assert client.items.create(title="after")["title"] == "after"
    finally:
        client.close()
        service.stop()
