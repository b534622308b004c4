"""What the bench loads, in which modes, and the figures it is held to."""

BASELINE = "bare Flask, sync workers"
BARE = "bare Flask, project's workers"
HEALTH_OFF = "health, harden off"
HEALTH = "health, harden on"
ITEMS = "items/<id>, harden on"
TOKEN = "items/<id>, with a token"
METERED = "items/<id>, metrics on"
POST = "POST items, harden on"
PG_ITEMS = "items/<id>, harden on, PostgreSQL"
PG_POST = "POST items, harden on, PostgreSQL"
SQLALCHEMY = "items/<id>, SQLAlchemy app"

# Stands for the path of the item the bench wrote (the same id in every database).
ITEM = "{item}"

# name -> (server group, path, wrk script or None)
TARGETS = {
    BASELINE: ("sync", "/api/v1/hello", None),
    BARE: ("bare", "/api/v1/hello", None),
    HEALTH_OFF: ("plain", "/api/v1/health", None),
    HEALTH: ("stack", "/api/v1/health", None),
    ITEMS: ("stack", ITEM, None),
    PG_ITEMS: ("stack-pg", ITEM, None),
    TOKEN: ("stack", ITEM, "token"),
    METERED: ("metered", ITEM, None),
    POST: ("stack", "/api/v1/items", "post"),
    PG_POST: ("stack-pg", "/api/v1/items", "post"),
    SQLALCHEMY: ("sqlalchemy", ITEM, None),
}

KEEPALIVE = "direct, keep-alive"
CLOSE = "direct, Connection: close"
NGINX = "nginx, HTTPS keep-alive"

# mode -> (front, clients send Connection: close, targets); each mode's first
# target is its baseline, which every ratio in the mode's table is set against.
VARIANTS = {
    KEEPALIVE: ("direct", False, list(TARGETS)),
    CLOSE: ("direct", True, [BASELINE, BARE, ITEMS, SQLALCHEMY]),
    NGINX: ("nginx", False, [BASELINE, BARE, ITEMS, PG_ITEMS, POST, PG_POST, SQLALCHEMY]),
}
FRONTS = {"direct": [KEEPALIVE, CLOSE], "nginx": [NGINX], "both": [KEEPALIVE, CLOSE, NGINX]}

# The targets on the PostgreSQL stack: left out of every mode with --database sqlite.
POSTGRESQL = {PG_ITEMS, PG_POST}

# (label, mode, target, other, limit, only at this concurrency or None for each):
# the median over rounds of target's rps over other's in the same round ≥ limit.
RATIO_GOALS = [
    ("items/<id> ≥ 0.80× baseline", KEEPALIVE, ITEMS, BASELINE, 0.80, None),
    ("items/<id> ≥ 0.80× bare Flask behind the same nginx", NGINX, ITEMS, BASELINE, 0.80, None),
    ("items/<id> ≥ 1.6× the SQLAlchemy app", KEEPALIVE, ITEMS, SQLALCHEMY, 1.6, None),
    ("items/<id> ≥ 1.6× the SQLAlchemy app", NGINX, ITEMS, SQLALCHEMY, 1.6, None),
    ("POST items ≥ 0.60× baseline", KEEPALIVE, POST, BASELINE, 0.60, 32),
    ("health harden on ≥ 0.95× harden off", KEEPALIVE, HEALTH, HEALTH_OFF, 0.95, None),
    ("items/<id> with a token ≥ 0.95× without", KEEPALIVE, TOKEN, ITEMS, 0.95, None),
    ("items/<id> metrics on ≥ 0.97× off", KEEPALIVE, METERED, ITEMS, 0.97, None),
]
# The same for p99 latency, ≤ limit.
P99_GOALS = [("items/<id> p99 ≤ 1.5× baseline's", KEEPALIVE, ITEMS, BASELINE, 1.5, 32)]
PSS_LIMIT_MB = 90.0
# (label, mode, target, other): the same within-round ratio, shown for information
# only. The two stores answer the same API: what the store alone costs or saves.
INFO_RATIOS = [
    ("items/<id> PostgreSQL ÷ SQLite", KEEPALIVE, PG_ITEMS, ITEMS),
    ("POST items PostgreSQL ÷ SQLite", KEEPALIVE, PG_POST, POST),
    ("items/<id> PostgreSQL ÷ SQLite", NGINX, PG_ITEMS, ITEMS),
    ("POST items PostgreSQL ÷ SQLite", NGINX, PG_POST, POST),
]
