"""Authentication on the real two-process stack (tests/support/stack.py): gunicorn
with its three workers in front of the internal service, tokens made and revoked
by the project's own admin command.

- Writes without a token are refused (401, the challenge) and change nothing,
  with anonymous reads off and on.
- Revoking a token takes effect in every gunicorn worker on the very next request.
- The brake: past AUTH_FAILURES failed authentications one client address gets
  429 with Retry-After, even with a valid token, while others are served.
- No token at rest: after the stack served requests with several tokens, no
  byte of its state directory (the SQLite file, its -wal and -shm) and no line
  of either server's log holds any of them.

Every loop is bounded in count and in time.
"""

import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor

import pytest

from support.baking import default_answers
from support.stack import WORKER_HEADER, WORKERS

PACKAGE = default_answers()["__package"]
REALM = f'Bearer realm="{default_answers()["project"]}"'
# Finding every worker: requests at most, and seconds at most, per round.
MAX_REQUESTS = 300
MAX_SECONDS = 30.0


def assert_challenged(answer, code="unauthorized"):
    assert answer.status == 401, (answer.status, answer.json)
    assert answer.json["error"]["code"] == code, answer.json
    assert answer.headers["WWW-Authenticate"].startswith(REALM), answer.headers


# ---------------------------------------------------------------- anonymous writes


@pytest.mark.parametrize(
    "anonymous_reads", [False, True], ids=["reads-need-a-token", "anonymous-reads"]
)
def test_anonymous_writes_get_401_direct_to_gunicorn_and_change_nothing(
    make_stack, anonymous_reads
):
    stack = make_stack(ANONYMOUS_READS="true" if anonymous_reads else "false").start()
    _, item = stack.request("POST", "/api/v1/items", {"title": "kept"})
    path = f"/api/v1/items/{item['id']}"
    for method, target, payload in [
        ("POST", "/api/v1/items", {"title": "anonymous"}),
        ("PUT", path, {"title": "changed anonymously"}),
        ("DELETE", path, None),
    ]:
        answer = stack.fetch(method, target, payload, token=None)
        assert_challenged(answer)
        assert answer.headers["WWW-Authenticate"] == REALM
    assert stack.request("GET", path) == (200, item)
    assert stack.request("GET", "/api/v1/items")[1]["total"] == 1
    read = stack.fetch("GET", path, token=None)
    if anonymous_reads:
        assert (read.status, read.json) == (200, item)
    else:
        assert_challenged(read)


# ---------------------------------------------------------------- revocation


def by_worker(stack, token, workers):
    """GET an item with token on new connections, WORKERS * 2 at a time, until every
    worker in workers has answered (bounded); {pid: Counter of (status, code)}."""
    seen = {}
    deadline = time.monotonic() + MAX_SECONDS

    def one(_):
        answer = stack.fetch("GET", "/api/v1/items/1", token=token, headers={WORKER_HEADER: "1"})
        code = (answer.json or {}).get("error", {}).get("code")
        return int(answer.headers[WORKER_HEADER]), (answer.status, code)

    with ThreadPoolExecutor(max_workers=WORKERS * 2) as pool:
        sent = 0
        while set(seen) != workers and sent < MAX_REQUESTS and time.monotonic() < deadline:
            for pid, outcome in pool.map(one, range(WORKERS * 2)):
                seen.setdefault(pid, Counter())[outcome] += 1
            sent += WORKERS * 2
    assert set(seen) == workers, f"not every worker answered in {sent} requests: {seen}"
    return seen


def test_revocation_takes_effect_in_every_worker_on_the_very_next_request(make_stack):
    """A token used until each of the three workers has served it; revoked with the
    admin command; from then on every worker refuses it (401 invalid_token), from
    the first request on, while the same workers go on serving another token."""
    stack = make_stack().start()
    stack.request("POST", "/api/v1/items", {"title": "read by every worker"})
    workers = stack.api_workers()
    assert len(workers) == WORKERS
    token = stack.mint(["items:read"], name="to be revoked")

    before = by_worker(stack, token, workers)
    assert all(set(counts) == {(200, None)} for counts in before.values()), before

    revoked = stack.revoke(token)
    assert revoked.stdout.strip() == f"token {stack.token_ids[token]} is revoked"
    after = by_worker(stack, token, workers)
    print(f"\nbefore revocation {before}\nafter revocation {after}")
    assert all(set(counts) == {(401, "invalid_token")} for counts in after.values()), after
    assert stack.api_workers() == workers, "a worker was replaced: that proves nothing"
    assert by_worker(stack, stack.token, workers)  # every worker still serves the others
    listing = stack.admin("tokens", "list").stdout.splitlines()
    row = next(line.split("\t") for line in listing[1:] if line.split("\t")[1] == "to be revoked")
    assert row[-1] == "yes", listing


# ---------------------------------------------------------------- the brake

BRAKE = 3
WINDOW = 3.0  # seconds


def test_the_brake_refuses_one_address_even_with_a_valid_token_and_lifts(make_stack):
    """Past BRAKE failed authentications from one client address (as the trusted
    proxy names it), that address gets 429 with Retry-After within the window, a
    valid token notwithstanding; another address is served meanwhile; after the
    window the first is served again."""
    stack = make_stack(AUTH_FAILURES=BRAKE, AUTH_WINDOW=WINDOW).start()
    braked, other = {"X-Forwarded-For": "192.0.2.7"}, {"X-Forwarded-For": "192.0.2.8"}
    refused = stack.trip_brake(attempts=BRAKE + 2, headers=braked)
    assert refused.json["error"]["code"] == "too_many_requests", refused.json
    assert 1 <= int(refused.headers["Retry-After"]) <= WINDOW, refused.headers
    assert stack.fetch("GET", "/api/v1/items", headers=braked).status == 429
    assert stack.fetch("GET", "/api/v1/items", headers=other).status == 200
    time.sleep(WINDOW + 0.5)
    assert stack.fetch("GET", "/api/v1/items", headers=braked).status == 200


# ---------------------------------------------------------------- no token at rest


def use_tokens(stack):
    """Requests with tokens of every kind, refused ones too; the tokens sent."""
    writer = stack.mint(["items:read", "items:write"], name="writer")
    reader = stack.mint(["items:read"], name="reader")
    revoked = stack.mint(["items:read", "items:write"], name="revoked")
    unknown = stack.unknown_token()
    _, item = stack.request("POST", "/api/v1/items", {"title": "at rest"}, token=writer)
    path = f"/api/v1/items/{item['id']}"
    assert stack.request("PUT", path, {"title": "still at rest"}, token=writer)[0] == 200
    assert stack.request("GET", path, token=reader)[0] == 200
    assert stack.fetch("POST", "/api/v1/items", {"title": "x"}, token=reader).status == 403
    assert stack.request("POST", "/api/v1/items", {"title": "by revoked"}, token=revoked)[0] == 201
    stack.revoke(revoked)
    assert_challenged(stack.fetch("GET", path, token=revoked), "invalid_token")
    assert_challenged(stack.fetch("GET", path, token=unknown), "invalid_token")
    assert stack.request("DELETE", path, token=writer)[0] == 204
    return [writer, reader, revoked, unknown]


def files_holding(stack, needles):
    """{file name: needles found} over every file of STATE_DIR and every server log."""
    files = [path for path in (stack.work_dir / "state").rglob("*") if path.is_file()]
    files += sorted(stack.work_dir.glob("*.log"))
    found = {}
    for path in files:
        data = path.read_bytes()
        hits = [needle for needle in needles if needle.encode() in data]
        if hits:
            found[path.name] = hits
    return found, [path.name for path in files]


def test_no_token_is_kept_in_the_state_or_the_logs(make_stack):
    """Every token (whole, and its random part without the prefix), and both
    secrets, are searched for in the bytes of every file: none is there, while the
    tokens' SHA-256 digests are (the search reads where tokens are kept), and the
    logs (at DEBUG) hold the requests."""
    stack = make_stack(LOG_LEVEL="DEBUG").start()
    tokens = use_tokens(stack)
    prefix = f"{PACKAGE}_"
    needles = tokens + [token.removeprefix(prefix) for token in tokens]
    needles += [stack.internal_token, stack.admin_token]
    digests = stack.python(
        "import hashlib, sys; print(*(hashlib.sha256(t.encode()).hexdigest()"
        f" for t in {tokens[:3]!r}))"
    ).split()
    shown = stack.admin("tokens", "list").stdout + stack.admin("audit").stdout
    assert [needle for needle in needles if needle in shown] == []

    for moment in ("running", "stopped"):
        if moment == "stopped":
            stack.stop()  # the last checkpoint of the WAL into the database file
        found, searched = files_holding(stack, needles)
        assert found == {}, (moment, found)
        assert {"items.sqlite3", "api.log", "internal.log"} <= set(searched), searched
        kept, _ = files_holding(stack, digests)
        assert sorted({d for hits in kept.values() for d in hits}) == sorted(digests), kept
    assert "POST /api/v1/items" in (stack.work_dir / "api.log").read_text("utf-8")
