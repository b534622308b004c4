"""Two internal service instances on one PostgreSQL database, as the API's client sees them
(INTERNAL_ADDRESS with both): its threads' connections are spread over the two; when one
instance is killed during a burst of writes, no acknowledged write is lost and the writes
go on through the other; a read whose instance died is answered by the other."""

import signal
import threading

from {{ cookiecutter.__package }}.internal_client import InternalError

from .support import client_for, free_port, mint_over_the_wire, start_internal, wait_for_port

THREADS = 8
WRITES = 40
# Writes acknowledged before one instance is killed: the burst is well under way.
KILL_AFTER = 60


def start_instances(spawn, work, count=2):
    """COUNT instances of the internal service on this test's database, logging to files
    in WORK; their ports and processes."""
    ports = [free_port() for _ in range(count)]
    # Started together: their migrations take turns (internal/migrations.py).
    processes = [
        start_internal(spawn, log=work / f"internal-{port}.log", INTERNAL_PORT=port)
        for port in ports
    ]
    for port, process in zip(ports, processes, strict=True):
        wait_for_port(port, process=process)
    return ports, processes


def addresses(ports):
    return ",".join(f"127.0.0.1:{port}" for port in ports)


def instance_of_this_thread(client):
    """The port of the instance this thread's pooled connection goes to."""
    return client._local.conn.sock.getpeername()[1]


def test_connections_are_spread_over_the_instances(spawn, tmp_path):
    ports, _ = start_instances(spawn, tmp_path)
    client = client_for(addresses(ports), api_token=mint_over_the_wire(addresses(ports)))
    seen = []

    def one_call():
        client.items.list()
        seen.append(instance_of_this_thread(client))
        client.close()

    threads = [threading.Thread(target=one_call) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)
    # Each new thread takes the next address: four threads, two on each.
    assert sorted(seen) == sorted(ports * 2)


class Burst:
    """THREADS writers of WRITES items each, through one client; what was acknowledged."""

    def __init__(self, client):
        self.client = client
        self.acknowledged = []
        self.failed = []
        self.underway = threading.Event()
        self._lock = threading.Lock()
        self.threads = [threading.Thread(target=self.write, args=(n,)) for n in range(THREADS)]

    def write(self, n):
        for i in range(WRITES):
            try:
                item = self.client.items.create(title=f"writer {n} item {i}", body="burst")
            except InternalError as exc:
                # Not acknowledged: the caller would see a 5xx and may retry.
                self.failed.append(exc)
                continue
            with self._lock:
                self.acknowledged.append(item)
                if len(self.acknowledged) >= KILL_AFTER:
                    self.underway.set()

    def start(self):
        for thread in self.threads:
            thread.start()
        return self

    def join(self):
        for thread in self.threads:
            thread.join(timeout=120)
        assert not any(thread.is_alive() for thread in self.threads)


def test_an_instance_killed_during_a_burst_of_writes_loses_no_acknowledged_write(
    spawn, tmp_path, own_store
):
    ports, processes = start_instances(spawn, tmp_path)
    token = mint_over_the_wire(addresses(ports))
    burst = Burst(client_for(addresses(ports), api_token=token)).start()
    assert burst.underway.wait(timeout=60)
    processes[0].send_signal(signal.SIGKILL)
    at_kill = len(burst.acknowledged)
    burst.join()

    assert len(burst.acknowledged) + len(burst.failed) == THREADS * WRITES
    # Only calls in flight on the killed instance fail; the rest go on through the other.
    assert len(burst.failed) <= THREADS
    assert len(burst.acknowledged) > at_kill
    survivor = client_for(f"127.0.0.1:{ports[1]}", api_token=token)
    try:
        for item in burst.acknowledged:
            assert survivor.items.get(item["id"]) == item
    finally:
        survivor.close()
    with own_store.raw() as db:
        stored = db.one("SELECT count(*) AS n FROM items WHERE body = 'burst'")["n"]
    # A write in flight when its instance died may have committed unacknowledged: never fewer.
    assert len(burst.acknowledged) <= stored <= THREADS * WRITES


def test_a_read_whose_instance_died_is_answered_by_the_other(spawn, tmp_path):
    ports, processes = start_instances(spawn, tmp_path)
    client = client_for(addresses(ports), api_token=mint_over_the_wire(addresses(ports)))
    try:
        item = client.items.create(title="read me", body="")
        # Kill the very instance this thread's connection is pooled to.
        dead = instance_of_this_thread(client)
        victim = processes[ports.index(dead)]
        victim.send_signal(signal.SIGKILL)
        victim.wait(timeout=10)
        assert client.items.get(item["id"]) == item
        assert instance_of_this_thread(client) != dead
        # A write, too, goes to the live instance: nothing was sent to the dead one.
        assert client.items.create(title="after", body="")["title"] == "after"
    finally:
        client.close()
