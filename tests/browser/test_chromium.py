"""The browser the tests drive: Debian's chromium, never one Playwright downloaded.

No chromium is an error that says how to get it (`make test` installs it);
a page served on loopback is a secure context, so the console's login page
can make its WebCrypto signing key there.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from playwright.sync_api import Browser

from .kit import MISSING_CHROMIUM, ChromiumMissing, chromium_executable

PAGE = b"""<!doctype html><title>loopback</title><script>
crypto.subtle.generateKey({name: "ECDSA", namedCurve: "P-256"}, false, ["sign"])
  .then(() => { document.title = "key made"; }, (e) => { document.title = "failed: " + e; });
</script>"""


class _Page(BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        self.send_response(200)
        self.send_header("Content-Type", "text/html")
        self.send_header("Content-Length", str(len(PAGE)))
        self.end_headers()
        self.wfile.write(PAGE)

    def log_message(self, format: str, *args: object) -> None:
        pass


@contextlib.contextmanager
def _serve() -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Page)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/"
    finally:
        server.shutdown()
        server.server_close()


def test_the_browser_is_the_system_chromium(browser: Browser) -> None:
    expected = os.environ.get("ZTGATE_CHROMIUM") or shutil.which("chromium")
    assert chromium_executable() == expected
    assert browser.browser_type.name == "chromium"
    assert browser.version


def test_no_chromium_is_an_error_that_says_how_to_get_it(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("ZTGATE_CHROMIUM", "/nonexistent/chromium")
    with pytest.raises(ChromiumMissing) as missing:
        chromium_executable()
    assert str(missing.value).startswith(MISSING_CHROMIUM)
    assert "apt-get install chromium" in str(missing.value)


def test_a_loopback_page_may_make_a_webcrypto_key(browser: Browser) -> None:
    context = browser.new_context()
    try:
        page = context.new_page()
        with _serve() as url:
            page.goto(url)
            page.wait_for_function("document.title !== 'loopback'", timeout=10_000)
            assert page.title() == "key made"
    finally:
        context.close()
