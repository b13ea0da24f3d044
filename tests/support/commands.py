"""A command listener for real clients: the commands they sent, as the server received them."""

from __future__ import annotations

from typing import Any

from pymongo import monitoring


class Commands(monitoring.CommandListener):
    """The commands a real client sent: (name, comment) in order."""

    def __init__(self) -> None:
        self.sent: list[tuple[str, Any]] = []

    def names(self) -> list[str]:
        """The commands' names, in order."""
        return [name for name, _ in self.sent]

    def started(self, event: monitoring.CommandStartedEvent) -> None:
        self.sent.append((event.command_name, event.command.get("comment")))

    def succeeded(self, event: monitoring.CommandSucceededEvent) -> None:
        pass

    def failed(self, event: monitoring.CommandFailedEvent) -> None:
        pass
