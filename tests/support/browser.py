"""A real browser for the console's tests: Debian's chromium driven by Playwright, every console error kept."""

from __future__ import annotations

import contextlib
import importlib
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tests.support.tools import missing_tool, require_binary

ROOT = Path(__file__).resolve().parents[2]
SCREENSHOTS = ROOT / "docs" / "console"
DESKTOP = {"width": 1280, "height": 860}
PHONE = {"width": 390, "height": 844}


def chromium_path() -> str:
    """Debian's chromium (`playwright install` cannot download a browser here)."""
    return require_binary("chromium", "Debian package chromium")


def sync_playwright() -> Any:
    """Playwright's sync API, or a failure under CI=true / a skip elsewhere when the package is missing."""
    try:
        module = importlib.import_module("playwright.sync_api")
    except ImportError:
        missing_tool("Python module playwright (PyPI playwright)")
    return module.sync_playwright()


# Chromium logs every 4xx/5xx answer as a console error; the tests expect some (a refused token).
_REFUSED = re.compile(r"^Failed to load resource: the server responded with a status of (\d+)")


@dataclass
class Watched:
    """A page with everything it complained about: console errors, uncaught exceptions, refused requests."""

    page: Any
    errors: list[str] = field(default_factory=list)
    refused: list[int] = field(default_factory=list)

    def clean(self, refused: list[int] | None = None) -> None:
        """Assert the page logged no error (a CSP violation is one) and only the `refused` answers expected."""
        assert not self.errors, "the console logged errors:\n" + "\n".join(self.errors)
        assert self.refused == (refused or []), f"answers refused: {self.refused}"


@contextlib.contextmanager
def browser() -> Iterator[Any]:
    """A headless chromium for a test module."""
    executable = chromium_path()
    with sync_playwright() as p:
        launched = p.chromium.launch(executable_path=executable, args=["--no-sandbox"], headless=True)
        try:
            yield launched
        finally:
            launched.close()


@contextlib.contextmanager
def page(launched: Any, viewport: dict[str, int] | None = None) -> Iterator[Watched]:
    """A fresh context (own sessionStorage, no cookies) and page, watched for errors."""
    context = launched.new_context(viewport=viewport or DESKTOP, service_workers="block")
    tab = context.new_page()
    tab.set_default_timeout(15_000)
    watched = Watched(tab)

    def on_console(message: Any) -> None:
        refused = _REFUSED.match(message.text)
        if refused:
            watched.refused.append(int(refused[1]))
        elif message.type in ("error", "warning"):
            watched.errors.append(f"console {message.type}: {message.text}")

    tab.on("console", on_console)
    tab.on("pageerror", lambda exc: watched.errors.append(f"uncaught: {exc}"))
    try:
        yield watched
    finally:
        context.close()


def screenshot(watched: Watched, name: str) -> Path:
    """Write docs/console/<name>.png (full page), the README's pictures of each view."""
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    path = SCREENSHOTS / f"{name}.png"
    watched.page.screenshot(path=str(path), full_page=True, animations="disabled", caret="hide")
    return path
