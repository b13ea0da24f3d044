"""The operator console: its page and assets, shipped in the package and served with a strict CSP."""

from __future__ import annotations

from importlib import resources

from starlette.responses import Response

from exporter.admin.errors import AdminError

# Only what the page itself needs, all from this origin: no inline script or style, no other site,
# never inside a frame.
CSP = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; connect-src 'self'; "
    "base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
)
HEADERS = {
    "Content-Security-Policy": CSP,
    "X-Frame-Options": "DENY",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Cross-Origin-Opener-Policy": "same-origin",
    "Cross-Origin-Resource-Policy": "same-origin",
    "Cache-Control": "no-cache",
}
MEDIA = {
    ".html": "text/html; charset=utf-8",
    ".js": "text/javascript; charset=utf-8",
    ".css": "text/css; charset=utf-8",
    ".svg": "image/svg+xml",
}
PAGE = "index.html"


class AssetNotFound(AdminError):
    """A console asset that does not exist."""

    status = 404
    kind = "not_found"


class Console:
    """The console's files, read once from the package (they never change while the daemon runs)."""

    def __init__(self) -> None:
        folder = resources.files("exporter").joinpath("console")
        self._files: dict[str, tuple[bytes, str]] = {}
        for item in folder.iterdir():
            suffix = "." + item.name.rsplit(".", 1)[-1] if "." in item.name else ""
            if item.is_file() and suffix in MEDIA:
                self._files[item.name] = (item.read_bytes(), MEDIA[suffix])

    @property
    def names(self) -> list[str]:
        """Every file the console serves."""
        return sorted(self._files)

    def page(self) -> Response:
        """The single page."""
        return self.asset(PAGE)

    def asset(self, name: str) -> Response:
        """One file by name, with the console's security headers."""
        found = self._files.get(name)
        if found is None:
            raise AssetNotFound(f"no such console file: {name}", location="path")
        body, media = found
        return Response(body, media_type=media, headers=HEADERS)
