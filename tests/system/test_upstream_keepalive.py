"""nginx keeps its connections to gunicorn open (the site file's upstream keepalive
and the project's gthread worker), seen from the kernel's socket table.

Requests through the real nginx front one after another all go over one
connection from nginx to gunicorn, which is still open after them: no TCP
setup and teardown per request on the hop.
"""

import psutil

from support.nginx import fetch
from support.tools import needs_root

pytestmark = needs_root("nginx's master binds the test ports and starts its workers as www-data")


def upstream_connections(port):
    """The local ends of nginx's established connections to gunicorn's PORT."""
    ends = set()
    for conn in psutil.net_connections(kind="tcp"):
        if conn.status != psutil.CONN_ESTABLISHED or not conn.raddr or conn.raddr.port != port:
            continue
        try:
            if conn.pid and psutil.Process(conn.pid).name() == "nginx":
                ends.add(conn.laddr)
        except psutil.NoSuchProcess:
            continue
    return ends


def test_requests_through_nginx_share_one_upstream_connection(nginx_front):
    port = nginx_front.stack.public_port
    seen = []
    for _ in range(10):
        response = fetch(nginx_front, "GET", "/api/v1/health")
        assert response.status == 200, response.body
        seen.append(upstream_connections(port))
    # One nginx worker, one request at a time: one connection, kept.
    assert all(len(ends) == 1 for ends in seen), seen
    assert len(set().union(*seen)) == 1, seen
