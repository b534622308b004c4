"""Malformed and extreme requests through the real nginx front: every answer in our shape.

Each probe goes to the generated site file run by Debian's nginx (the
nginx_front fixture, tests/system/conftest.py) in front of the real gunicorn,
over TLS: HTTP/1.1 as exact bytes, HTTP/2 as exact frames (support/probes.py).
The shapes are the request smuggling ones (CL.TE, TE.CL, doubled, negative
and odd Content-Lengths, folded or doubled Transfer-Encodings), request lines
and header sets at each size band (under gunicorn's limits, past them, past
nginx's), bad versions, TRACE, unknown transfer codings, foreign and missing
Hosts, broken chunking and bodies too large, too short or too slow.

Whoever answers, nginx or gunicorn or the app, the answer must be the app's
JSON error ({"error": {"code", "message"}}), with the app's security headers
(those of its own JSON 404, through nginx), no Server header and neither
"nginx" nor "gunicorn" anywhere. A 5xx is allowed only where it is the state
of the upstream (502: nothing listens; 504: it never accepts) or nginx's
RFC 9112 answer to a transfer coding (501) or HTTP version (505) it does not
implement. Where nginx gives no answer at all, the probe expects the close:
another name than ours (444), HTTP/0.9 (an answer without headers), a
client that stops sending (nginx logs 408 or 400 and sends nothing), and over
HTTP/2 the stream or connection it refuses.

All probes run at once, each on its own connection from its own loopback
address (nginx's per-address rate limit never answers for one); the slow
ones wait out nginx's 10 s timeouts meanwhile.
"""

import collections
import socket
from concurrent.futures import ThreadPoolExecutor
from types import SimpleNamespace

import pytest

from support.probes import CLOSED, check, exchange, h2_exchange, source
from support.tools import needs_root

pytestmark = needs_root("nginx's master binds the test ports and starts its workers as www-data")

LIMIT = 131072  # client_max_body_size 128k, the app's MAX_CONTENT_LENGTH
MISSING = b"/api/v1/no-such-route"  # what gets through is answered by the app's JSON 404
HOST = b"Host: example.com\r\n"
ITEMS = b"POST /api/v1/items HTTP/1.1\r\n" + HOST + b"Authorization: Bearer {token}\r\n"
ITEMS += b"Content-Type: application/json\r\n"
CHUNKED = ITEMS + b"Transfer-Encoding: chunked\r\n\r\n"
UPSTREAM = "the upstream's state"
UNIMPLEMENTED = "nginx's RFC 9112 answer to what it does not implement"
QUICK = (0, 5)  # seconds an answer or close may take
TIMED_OUT = (9, 16)  # nginx's client_header_timeout and client_body_timeout: 10 s


def probe(expected, request, *, five=None, within=QUICK, **options):
    """expected: a status or CLOSED; five: why a 5xx is allowed; options for the exchange."""
    return SimpleNamespace(expected=expected, request=request, five=five, within=within, **options)


def get(path=MISSING, *headers, version=b"HTTP/1.1", method=b"GET", host=HOST):
    """A request head with the given header lines (bytes, each ending in CRLF)."""
    return method + b" " + path + b" " + version + b"\r\n" + host + b"".join(headers) + b"\r\n"


def many(count, size, name=b"X-Probe"):
    """count header lines, each size bytes long with its name and CRLF."""
    return [name + b"%d: " % i + b"a" * (size - len(name) - 4 - len(b"%d" % i)) + b"\r\n"
            for i in range(count)]  # fmt: skip


H1 = {
    # Request smuggling: two framings, or one that two parsers could read apart.
    "CL.TE": probe(
        400, ITEMS + b"Content-Length: 6\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\nX"
    ),
    "TE.CL": probe(
        400,
        ITEMS + b"Transfer-Encoding: chunked\r\nContent-Length: 3\r\n\r\n"
        b"8\r\nSMUGGLED\r\n0\r\n\r\n",
    ),
    "Content-Length twice, same value": probe(
        400, ITEMS + b"Content-Length: 2\r\nContent-Length: 2\r\n\r\n{}"
    ),
    "Content-Length twice, two values": probe(
        400, ITEMS + b"Content-Length: 2\r\nContent-Length: 41\r\n\r\n{}"
    ),
    "Content-Length as a list": probe(400, ITEMS + b"Content-Length: 2, 2\r\n\r\n{}"),
    "negative Content-Length": probe(400, ITEMS + b"Content-Length: -1\r\n\r\n{}"),
    "Content-Length with a plus sign": probe(400, ITEMS + b"Content-Length: +2\r\n\r\n{}"),
    "Content-Length in hex": probe(400, ITEMS + b"Content-Length: 0x2\r\n\r\n{}"),
    "Content-Length past 64 bits": probe(
        400, ITEMS + b"Content-Length: 99999999999999999999999\r\n\r\n{}"
    ),
    "Transfer-Encoding twice": probe(
        400, ITEMS + b"Transfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n"
    ),
    "space before Transfer-Encoding's colon": probe(
        400, ITEMS + b"Transfer-Encoding : chunked\r\n\r\n0\r\n\r\n"
    ),
    "Transfer-Encoding folded (obs-fold)": probe(
        400, ITEMS + b"Transfer-Encoding:\r\n chunked\r\n\r\n0\r\n\r\n"
    ),
    "Transfer-Encoding in HTTP/1.0": probe(
        400,
        ITEMS.replace(b"HTTP/1.1", b"HTTP/1.0") + b"Transfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
    ),
    "unknown Transfer-Encoding": probe(
        501, ITEMS + b"Transfer-Encoding: gzip\r\n\r\n", five=UNIMPLEMENTED
    ),
    "Transfer-Encoding gzip, chunked": probe(
        501, ITEMS + b"Transfer-Encoding: gzip, chunked\r\n\r\n0\r\n\r\n", five=UNIMPLEMENTED
    ),
    "Transfer-Encoding xchunked": probe(
        501, ITEMS + b"Transfer-Encoding: xchunked\r\n\r\n0\r\n\r\n", five=UNIMPLEMENTED
    ),
    # Header syntax.
    "obs-fold with a space": probe(400, get(MISSING, b"X-Folded: a\r\n b\r\n")),
    "obs-fold with a tab": probe(400, get(MISSING, b"X-Folded: a\r\n\tb\r\n")),
    "space before a header's colon": probe(400, get(MISSING, b"X-Spaced : a\r\n")),
    "bare LF line ends": probe(404, get().replace(b"\r\n", b"\n")),
    # Versions and methods.
    "HTTP/2.0 in an HTTP/1 request line": probe(
        505, get(version=b"HTTP/2.0"), five=UNIMPLEMENTED
    ),
    "HTTP/3.0": probe(505, get(version=b"HTTP/3.0"), five=UNIMPLEMENTED),
    "HTTP/9.9": probe(505, get(version=b"HTTP/9.9"), five=UNIMPLEMENTED),
    "HTTP/1.1000": probe(400, get(version=b"HTTP/1.1000")),
    "HTTQ/1.1": probe(400, get(version=b"HTTQ/1.1")),
    "lower-case http/1.1": probe(400, get(version=b"http/1.1")),
    "HTTP/0.9 (no version)": probe(CLOSED, b"GET /api/v1/health\r\n"),
    "HTTP/0.9 naming our host": probe(CLOSED, b"GET https://example.com/api/v1/health\r\n"),
    "TRACE": probe(405, get(b"/", method=b"TRACE")),
    "TRACE on the API": probe(405, get(b"/api/v1/health", method=b"TRACE")),
    "TRACK": probe(405, get(b"/api/v1/health", method=b"TRACK")),
    "CONNECT": probe(400, get(b"example.com:443", method=b"CONNECT")),
    "lower-case method": probe(400, get(method=b"get")),
    "plain HTTP on the TLS port": probe(400, get(), tls=False),
    # Hosts: ours is the only one answered.
    "no Host": probe(CLOSED, get(host=b"")),
    "Host twice": probe(400, get(MISSING, HOST)),
    "foreign Host": probe(CLOSED, get(host=b"Host: attacker.example\r\n")),
    "foreign name in the request line": probe(CLOSED, get(b"https://attacker.example/")),
    "TRACE for a foreign Host": probe(
        CLOSED, get(b"/", method=b"TRACE", host=b"Host: attacker.example\r\n")
    ),
    "Host with a space": probe(400, get(host=b"Host: exa mple.com\r\n")),
    # Request lines at each size band: under gunicorn's 4094, past it, past nginx's 8k.
    "URL of 3 KiB": probe(404, get(MISSING + b"?q=" + b"a" * 3000)),
    "URL of 6 KiB": probe(414, get(MISSING + b"?q=" + b"a" * 6000)),
    "URL of 9 KiB": probe(414, get(MISSING + b"?q=" + b"a" * 9000)),
    "URL of 64 KiB": probe(414, get(MISSING + b"?q=" + b"a" * 65536)),
    # Header sets at each band: gunicorn's 100 fields and 8190 bytes a field,
    # nginx's 8k a line and 32k in all.
    "a header of 4 KiB": probe(404, get(MISSING, *many(1, 4096))),
    "a header of 9 KiB": probe(400, get(MISSING, *many(1, 9216))),
    "a cookie of 9 KiB": probe(400, get(MISSING, b"Cookie: c=" + b"a" * 9216 + b"\r\n")),
    "20 headers of 1 KiB": probe(404, get(MISSING, *many(20, 1024))),
    "150 headers": probe(431, get(MISSING, *many(150, 16))),
    "5 headers of 7 KiB": probe(400, get(MISSING, *many(5, 7168))),
    # Bodies.
    "a body one byte over the limit": probe(
        413, ITEMS + b"Content-Length: %d\r\n\r\n" % (LIMIT + 1) + b"x" * (LIMIT + 1)
    ),
    "a length over the limit, Expect: 100-continue": probe(
        413, ITEMS + b"Expect: 100-continue\r\nContent-Length: %d\r\n\r\n" % (LIMIT + 1)
    ),
    "a chunked body over the limit": probe(
        413, CHUNKED + b"%x\r\n" % (LIMIT + 1) + b"x" * (LIMIT + 1) + b"\r\n0\r\n\r\n"
    ),
    "chunk size not hex": probe(400, CHUNKED + b"zz\r\n{}\r\n0\r\n\r\n"),
    "chunk size past 64 bits": probe(400, CHUNKED + b"ffffffffffffffffff\r\n{}\r\n0\r\n\r\n"),
    "chunk longer than its size": probe(400, CHUNKED + b"2\r\n{}XX\r\n0\r\n\r\n"),
    "chunk size with a space inside": probe(400, CHUNKED + b"1 2\r\n{}\r\n0\r\n\r\n"),
    "a body shorter than its length, then the client stops": probe(
        CLOSED, ITEMS + b"Content-Length: 100\r\n\r\n{}", half_close=True
    ),
    "a body that stalls": probe(
        CLOSED, ITEMS + b"Content-Length: 100\r\n\r\n{}", within=TIMED_OUT
    ),
    "a chunked body that stalls": probe(CLOSED, CHUNKED + b"2\r\n{}\r\n", within=TIMED_OUT),
    "a request head that stalls": probe(
        CLOSED, b"GET /api/v1/health HTTP/1.1\r\n" + HOST, within=TIMED_OUT
    ),
    # The upstream's state: nothing listens behind the second copy.
    "the upstream is down": probe(502, get(b"/api/v1/health"), five=UPSTREAM, upstream="dead"),
}  # fmt: skip

BASE = [(b":method", b"GET"), (b":scheme", b"https"), (b":authority", b"example.com")]
GET = [*BASE, (b":path", MISSING)]
POST = [(b":method", b"POST"), *BASE[1:], (b":path", b"/api/v1/items")]
POST += [(b"authorization", b"Bearer {token}"), (b"content-type", b"application/json")]
OVER = b"x" * (LIMIT + 1)


def h2(expected, headers, body=None, *, five=None):
    return probe(expected, headers, five=five, body=body)


H2 = {
    "TRACE": h2(405, [(b":method", b"TRACE"), *GET[1:]]),
    "a body over the limit, with content-length": h2(
        413, [*POST, (b"content-length", b"%d" % len(OVER))], OVER
    ),
    "a body over the limit, no length": h2(413, POST, OVER),
    "unknown transfer-encoding": h2(
        501, [*POST, (b"transfer-encoding", b"gzip")], b"{}", five=UNIMPLEMENTED
    ),
    "transfer-encoding chunked (not HTTP/2)": h2(
        422, [*POST, (b"transfer-encoding", b"chunked")], b"{}"
    ),
    "negative content-length": h2(400, [*POST, (b"content-length", b"-1")], b"{}"),
    "content-length twice": h2(
        400, [*POST, (b"content-length", b"2"), (b"content-length", b"2")], b"{}"
    ),
    "content-length over the body": h2(400, [*POST, (b"content-length", b"10")], b"{}"),
    "content-length under the body": h2(400, [*POST, (b"content-length", b"1")], b"{}"),
    "foreign :authority": h2(
        CLOSED, [*GET[:2], (b":authority", b"attacker.example"), GET[3]]
    ),
    "foreign host header, no :authority": h2(
        CLOSED, [*GET[:2], GET[3], (b"host", b"attacker.example")]
    ),
    "upper-case header name": h2(CLOSED, [*GET, (b"X-Upper", b"a")]),
    "NUL in a header value": h2(CLOSED, [*GET, (b"x-probe", b"a\x00b")]),
    "CR LF in a header value": h2(CLOSED, [*GET, (b"x-probe", b"a\r\nx-smuggled: b")]),
    "no :path": h2(400, BASE),
    "a :path not starting with /": h2(400, [*BASE, (b":path", b"api/v1/health")]),
    "a space in :method": h2(400, [(b":method", b"G ET"), *GET[1:]]),
    "a connection header": h2(404, [*GET, (b"connection", b"keep-alive")]),
    "a :path of 6 KiB": h2(414, [*BASE, (b":path", MISSING + b"?q=" + b"a" * 6000)]),
    "a :path of 9 KiB": h2(414, [*BASE, (b":path", MISSING + b"?q=" + b"a" * 9000)]),
    "a :path of 40 KiB": h2(CLOSED, [*BASE, (b":path", MISSING + b"?q=" + b"a" * 40000)]),
    "a header of 9 KiB": h2(431, [*GET, (b"x-probe", b"a" * 9216)]),
    "150 headers": h2(431, [*GET, *((b"x-probe%d" % i, b"a") for i in range(150))]),
    "5 headers of 7 KiB": h2(
        CLOSED, [*GET, *((b"x-probe%d" % i, b"a" * 7168) for i in range(5))]
    ),
}  # fmt: skip

PROBES = {f"h1: {name}": spec for name, spec in H1.items()}
PROBES.update({f"h2: {name}": spec for name, spec in H2.items()})


def send(front, name, number):
    """One probe, from its own loopback address; its outcome."""
    spec = PROBES[name]
    token = front.stack.token.encode()
    address = source(number)
    if name.startswith("h2: "):
        headers = [(key, value.replace(b"{token}", token)) for key, value in spec.request]
        return h2_exchange(front, headers, spec.body, address=address)
    # The TLS port, even for plain HTTP; that of the copy before nothing for the upstream's state.
    port = front.dead_https_port if getattr(spec, "upstream", None) else front.https_port
    return exchange(
        front,
        spec.request.replace(b"{token}", token),
        tls=getattr(spec, "tls", True),
        port=port,
        address=address,
        half_close=getattr(spec, "half_close", False),
    )


@pytest.fixture(scope="module")
def matrix(nginx_front):
    """Every probe, all at once; name -> outcome."""
    with ThreadPoolExecutor(max_workers=32) as pool:
        sent = {
            name: pool.submit(send, nginx_front, name, number) for number, name in enumerate(PROBES)
        }
        return {name: future.result() for name, future in sent.items()}


@pytest.mark.parametrize("name", list(PROBES))
def test_every_probe_gets_our_json_error_or_a_close(matrix, nginx_front, name):
    spec, outcome = PROBES[name], matrix[name]
    problems = check(outcome, spec.expected, nginx_front.app_headers, allow_5xx=bool(spec.five))
    low, high = spec.within
    if not low <= outcome.elapsed <= high:
        problems.append(f"took {outcome.elapsed:.1f} s, expected {low}-{high} s")
    assert problems == [], f"{name}: {outcome}\n" + "\n".join(problems)


def test_the_matrix_covers_both_protocols_and_every_shape(matrix, capsys):
    """At least 40 probes, both protocols; the summary line for the record."""
    counts = collections.Counter(
        str(outcome.status if outcome.status != CLOSED else "closed") for outcome in matrix.values()
    )
    h1 = sum(name.startswith("h1: ") for name in matrix)
    h2_count = len(matrix) - h1
    with capsys.disabled():
        statuses = ", ".join(f"{status}: {count}" for status, count in sorted(counts.items()))
        print(
            f"\nprobe matrix through nginx over TLS: {len(matrix)} probes "
            f"(HTTP/1.1 {h1}, HTTP/2 {h2_count}); {statuses}"
        )
    assert len(matrix) >= 40 and h1 >= 30 and h2_count >= 10, (h1, h2_count)
    # Every status nginx and gunicorn answer a malformed request with, and the closes.
    assert {"400", "405", "413", "414", "431", "501", "502", "505", "closed"} <= set(counts)


def test_a_stuck_upstream_gets_our_json_504(nginx_front):
    """An upstream that never accepts (its listen queue full): nginx waits
    proxy_connect_timeout (5 s) and answers 504 in our shape."""
    with socket.socket() as listener:
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind(("127.0.0.1", nginx_front.dead_upstream_port))
        listener.listen(0)
        # Connections nobody accepts fill the queue; the next SYN is dropped.
        fillers = [socket.socket() for _ in range(3)]
        try:
            for filler in fillers:
                filler.setblocking(False)
                filler.connect_ex(("127.0.0.1", nginx_front.dead_upstream_port))
            outcome = exchange(
                nginx_front,
                get(b"/api/v1/health"),
                port=nginx_front.dead_https_port,
                address=source(251),
            )
        finally:
            for filler in fillers:
                filler.close()
    problems = check(outcome, 504, nginx_front.app_headers, allow_5xx=True)
    assert problems == [], f"{outcome}\n" + "\n".join(problems)
    assert 4.5 < outcome.elapsed < 10, outcome.elapsed
