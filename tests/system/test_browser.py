"""What only a browser enforces, in Debian's chromium (headless, driven by Playwright).

The default project runs under real gunicorn on loopback. Each check runs
against harden on, and where it proves that something is blocked, also
against harden off, where the same thing must get through: that shows the
block comes from the headers and not from the test.

The page keeps no token. With anonymous reads off (the default) it shows the
service's status and says that the API needs a token; with ANONYMOUS_READS on
it lists the items.
"""

import http.server
import re
import threading

import pytest
from playwright.sync_api import expect, sync_playwright

from support.baking import default_answers
from support.stack import Stack
from support.tools import tool

PACKAGE = default_answers()["__package"]
ITEMS_URL = "/api/v1/items?limit=10"

CHROMIUM = "/usr/bin/chromium"
# The flags of the design contract: no sandbox as root, and none of the
# background traffic to Google that a closed network refuses.
FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--no-first-run",
]
TIMEOUT_MS = 15_000
INLINE_SCRIPT = "<script>window.inlineRan = true; document.title = 'inline ran';</script>"
# Runs before any script of the page (Playwright injects it; CSP does not apply to it).
RECORD_VIOLATIONS = """
window.cspViolations = [];
document.addEventListener("securitypolicyviolation", (event) => {
  window.cspViolations.push(event.violatedDirective + " " + event.blockedURI);
});
"""


@pytest.fixture(scope="module")
def browser():
    """One chromium for the module.

    Playwright's launch() gives chromium a new, empty temporary profile
    directory and removes it on close; each test then opens a fresh context.
    """
    tool(CHROMIUM, "chromium")
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=CHROMIUM, headless=True, args=FLAGS, timeout=60_000
        )
        try:
            yield browser
        finally:
            browser.close()


class Tab:
    """A page that records its console messages and CSP violations."""

    def __init__(self, browser):
        self.context = browser.new_context()
        self.context.set_default_timeout(TIMEOUT_MS)
        self.page = self.context.new_page()
        self.console = []
        self.errors = []  # (text, url) of each console error
        self.page.on("console", self._record)
        self.page.add_init_script(RECORD_VIOLATIONS)

    def _record(self, message):
        self.console.append(message.text)
        if message.type == "error":
            self.errors.append((message.text, message.location.get("url", "")))

    def errors_besides(self, *expected):
        """Console errors other than the expected (status, url) resource loads; a
        browser's own ask for /favicon.ico (404) is not the page's doing."""
        allowed = {(f"status of {status} ", url) for status, url in expected}
        allowed.add(("status of 404 ", self.page.url.rstrip("/") + "/favicon.ico"))
        return [
            (text, url)
            for text, url in self.errors
            if not any(fragment in text and url == where for fragment, where in allowed)
        ]

    def csp_messages(self):
        return [text for text in self.console if "Content Security Policy" in text]

    def violations(self):
        return self.page.evaluate("window.cspViolations")

    def wait_for_console(self, text, timeout_ms=5000):
        """Console events arrive asynchronously: give one a bounded time to show up."""
        for _ in range(timeout_ms // 50):
            if any(text in message for message in self.console):
                return True
            self.page.wait_for_timeout(50)
        return False


@pytest.fixture
def tab(browser):
    tab = Tab(browser)
    yield tab
    tab.context.close()


def wait_until_rendered(page):
    """app.js has written both answers into the page.

    Playwright's expect() polls from its own isolated world; wait_for_function
    would evaluate a string in the page, which the CSP rightly refuses.
    """
    for selector in ("#health", "#items"):
        expect(page.locator(selector)).not_to_have_text("loading", timeout=TIMEOUT_MS)


@pytest.fixture(scope="module")
def reads_stack(default_project, tmp_path_factory):
    """The default project with ANONYMOUS_READS on (harden on), running on loopback."""
    work = tmp_path_factory.mktemp("anonymous-reads")
    stack = Stack(default_project, PACKAGE, work, True, settings={"ANONYMOUS_READS": "true"})
    try:
        yield stack.start()
    finally:
        stack.stop()


def open_page(tab, stack):
    """Load the page and wait until app.js has written both answers."""
    response = tab.page.goto(stack.base_url + "/")
    assert response.status == 200
    assert "frame-ancestors 'none'" in response.headers["content-security-policy"]
    wait_until_rendered(tab.page)


def assert_styled_without_violations(tab):
    # style.css applied: proof that the policy let the stylesheet in.
    assert (
        tab.page.evaluate("getComputedStyle(document.querySelector('output')).fontWeight") == "700"
    )
    assert tab.violations() == []
    assert tab.csp_messages() == []


def test_without_a_token_the_page_shows_the_status_and_says_a_token_is_needed(hardened_stack, tab):
    """Anonymous reads off: the list of items answers 401, and the page says why
    instead of a count; the service status is shown; no CSP violation at all."""
    hardened_stack.request("POST", "/api/v1/items", {"title": "not for anonymous eyes"})
    assert hardened_stack.fetch("GET", ITEMS_URL, token=None).status == 401

    open_page(tab, hardened_stack)
    assert tab.page.text_content("#health") == "ok"
    said = tab.page.text_content("#items")
    assert not re.fullmatch(r"\s*\d+\s*", said), said
    assert "token" in said.lower(), said
    assert tab.page.inner_text("#item-list").strip() == ""
    assert "not for anonymous eyes" not in tab.page.content()
    assert_styled_without_violations(tab)
    # The one console error is the browser's note of the 401 itself.
    assert tab.errors_besides((401, hardened_stack.base_url + ITEMS_URL)) == [], tab.console


def test_with_anonymous_reads_the_page_lists_the_items(reads_stack, tab):
    reads_stack.request("POST", "/api/v1/items", {"title": "seen by chromium"})
    _, listing = reads_stack.request("GET", ITEMS_URL, token=None)

    open_page(tab, reads_stack)
    assert tab.page.text_content("#health") == "ok"
    assert tab.page.text_content("#items") == str(listing["total"])
    assert "seen by chromium" in tab.page.inner_text("#item-list")
    assert_styled_without_violations(tab)
    assert tab.errors_besides() == [], tab.console


@pytest.fixture
def other_origin():
    """A page on another loopback port that frames whatever URL is put in `target`."""
    state = {"target": None}

    class Framer(http.server.BaseHTTPRequestHandler):
        def do_GET(self):
            body = (
                "<!doctype html><title>framer</title>"
                f'<iframe id="victim" src="{state["target"]}"></iframe>'
            ).encode()
            self.send_response(200)
            self.send_header("Content-Type", "text/html; charset=utf-8")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args):
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Framer)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    state["url"] = f"http://127.0.0.1:{server.server_address[1]}/"
    try:
        yield state
    finally:
        server.shutdown()
        server.server_close()


def load_in_frame(tab, other_origin, stack):
    """Open the framer page; return the app's answer to the frame and the frame itself."""
    target = stack.base_url + "/"
    other_origin["target"] = target
    with tab.page.expect_response(target) as answered:
        tab.page.goto(other_origin["url"])
    frame = tab.page.frame_locator("#victim")
    tab.page.wait_for_load_state("load")
    return answered.value, frame


@pytest.mark.parametrize("harden", [True, False], ids=["harden-on", "harden-off"])
def test_another_origin_cannot_frame_the_page(request, tab, other_origin, harden):
    stack = request.getfixturevalue("hardened_stack" if harden else "plain_stack")
    answer, frame = load_in_frame(tab, other_origin, stack)
    # The app did answer; only the browser can refuse to show it.
    assert answer.status == 200
    shown = frame.locator("#health")
    if harden:
        assert shown.count() == 0
        assert tab.page.frames[1].url.startswith("chrome-error://")
        assert tab.wait_for_console("frame-ancestors 'none'"), tab.console
    else:
        shown.wait_for()
        assert shown.count() == 1


def serve_with_inline_script(route):
    """A test copy of the page: the real answer and headers, with an inline script added."""
    response = route.fetch()
    body = response.text().replace("</body>", INLINE_SCRIPT + "</body>")
    route.fulfill(response=response, body=body)


@pytest.mark.parametrize("harden", [True, False], ids=["harden-on", "harden-off"])
def test_an_injected_inline_script_does_not_run(request, tab, harden):
    stack = request.getfixturevalue("hardened_stack" if harden else "plain_stack")
    tab.page.route(stack.base_url + "/", serve_with_inline_script)
    tab.page.goto(stack.base_url + "/")
    wait_until_rendered(tab.page)
    assert INLINE_SCRIPT in tab.page.content()
    ran = tab.page.evaluate("window.inlineRan === true")
    if harden:
        assert ran is False
        # The page's own script still ran, and the refusal was reported.
        assert tab.page.text_content("#health") == "ok"
        assert any(v.startswith("script-src") for v in tab.violations()), tab.violations()
    else:
        assert ran is True
