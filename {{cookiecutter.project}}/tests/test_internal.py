"""The internal service's entry point: start-up refusals, and writes that survive a crash."""

import signal

import pytest

from .support import (
    PREFIX,
    client_for,
    free_port,
    mint_over_the_wire,
    refusal,
    start_internal,
    wait_for_port,
)


@pytest.mark.parametrize("bind", ["0.0.0.0", "::", "[::]", "", "*", "0"])
def test_internal_service_refuses_a_wildcard_bind(spawn, bind):
    line = refusal(start_internal(spawn, INTERNAL_BIND=bind, INTERNAL_PORT=free_port()))
    assert f"{PREFIX}_INTERNAL_BIND" in line and "wildcard" in line


def test_internal_service_refuses_a_public_address_on_one_host(spawn):
    line = refusal(
        start_internal(
            spawn, INTERNAL_BIND="192.0.2.10", INTERNAL_PORT=free_port(), TRUSTED_CLIENTS=""
        )
    )
    assert f"{PREFIX}_INTERNAL_BIND" in line and "loopback" in line


@pytest.mark.parametrize("token", ["", "short-token"])
def test_internal_service_refuses_a_missing_or_short_token(spawn, token):
    line = refusal(start_internal(spawn, INTERNAL_TOKEN=token, INTERNAL_PORT=free_port()))
    assert f"{PREFIX}_INTERNAL_TOKEN" in line


def test_internal_service_refuses_a_badly_typed_setting(spawn):
    line = refusal(start_internal(spawn, INTERNAL_PORT="eighty"))
    assert f"{PREFIX}_INTERNAL_PORT" in line


def test_an_acknowledged_write_survives_a_crash(spawn):
    port = free_port()
    process = start_internal(spawn, INTERNAL_PORT=port)
    wait_for_port(port, process=process)
    address = f"127.0.0.1:{port}"
    client = client_for(address, api_token=mint_over_the_wire(address))
    item = client.items.create(title="durable", body="x" * 1000)
    process.send_signal(signal.SIGKILL)
    process.wait(timeout=10)
    client.close()

    process = start_internal(spawn, INTERNAL_PORT=port)
    wait_for_port(port, process=process)
    try:
        assert client.items.get(item["id"]) == item
    finally:
        client.close()
