"""The console's page over real HTTP: where it is served, its security headers, and what its files may contain."""

from __future__ import annotations

import re
from html.parser import HTMLParser
from importlib import resources
from pathlib import Path

from exporter.admin.console import CSP
from exporter.mongod import free_port
from tests.support.daemon import config, serving, write_config

CONSOLE = resources.files("exporter").joinpath("console")


class _Tags(HTMLParser):
    """Every start tag with its attributes."""

    def __init__(self) -> None:
        super().__init__()
        self.tags: list[tuple[str, dict[str, str | None]]] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append((tag, dict(attrs)))


async def test_served_on_the_admin_listener_only_with_strict_headers(tmp_path: Path, mongo_uri: str) -> None:
    """/admin/ui/ and its files answer on the admin listener with the CSP, DENY framing and no cookie;
    the metrics listener does not serve them; no path leaves the console's folder."""
    data = config(
        mongo_uri, [{"name": "p", "database": "spe_console_page", "collection": "p"}],
        admin={"listen": f"127.0.0.1:{free_port()}"},
    )  # fmt: skip
    async with serving(write_config(tmp_path, data)) as d, d.client(None) as http, d.metrics_client() as metrics:
        page = await http.get("/admin/ui/")
        assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
        assert page.headers["content-security-policy"] == CSP
        assert "default-src 'none'" in CSP and "frame-ancestors 'none'" in CSP and "unsafe" not in CSP
        assert page.headers["x-frame-options"] == "DENY"
        assert page.headers["x-content-type-options"] == "nosniff"
        assert "set-cookie" not in page.headers
        parser = _Tags()
        parser.feed(page.text)
        linked = [a.get("src") or a.get("href") for tag, a in parser.tags if tag in ("script", "link")]
        assert linked and all(isinstance(u, str) and u.startswith("/admin/ui/") for u in linked)
        for url in linked:
            assert isinstance(url, str)
            asset = await http.get(url)
            assert asset.status_code == 200, url
            assert asset.headers["content-security-policy"] == CSP
        script = await http.get("/admin/ui/app.js")
        assert script.headers["content-type"].startswith("text/javascript")
        for missing in ("/admin/ui/nope.js", "/admin/ui/..%2f..%2fpyproject.toml", "/admin/ui/__init__.py"):
            response = await http.get(missing)
            assert response.status_code == 404, missing
            assert set(response.json()) == {"error", "message", "problems"}
        assert (await metrics.get("/admin/ui/")).status_code == 404
        assert (await http.get("/admin/ui")).status_code == 200


async def test_off_without_tokens(tmp_path: Path, mongo_uri: str) -> None:
    """No admin token, no console: the same 404 as the rest of the admin API."""
    data = config(mongo_uri, [{"name": "p", "database": "spe_console_page", "collection": "p"}], tokens=False)
    async with serving(write_config(tmp_path, data)) as d, d.client(None) as http:
        response = await http.get("/admin/ui/")
        assert response.status_code == 404
        assert response.json()["message"].startswith("the admin API is off")


def test_no_inline_script_style_or_html_injection() -> None:
    """The page has no inline script, style or handler (the CSP would refuse them), and the scripts build
    the page from elements and text only: no innerHTML, eval or document.write a stored value could ride."""
    page = CONSOLE.joinpath("index.html").read_text(encoding="utf-8")
    parser = _Tags()
    parser.feed(page)
    for tag, attrs in parser.tags:
        assert tag != "style", "inline <style>"
        assert "style" not in attrs, f"style attribute on <{tag}>"
        assert not [a for a in attrs if a.startswith("on")], f"inline handler on <{tag}>"
        if tag == "script":
            assert attrs.get("src"), "inline <script>"
    for item in CONSOLE.iterdir():
        if item.name.endswith(".js"):
            code = item.read_text(encoding="utf-8")
            for banned in (r"\.innerHTML", r"\.outerHTML", r"insertAdjacentHTML", r"\beval\(", r"new Function",
                           r"document\.write", r"localStorage", r"document\.cookie"):  # fmt: skip
                assert not re.search(banned, code), f"{item.name}: {banned}"
