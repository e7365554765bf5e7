"""The edge agent's one error tree, so the CLI can catch one base class and print one line.

Every error here carries a message an operator can act on. Library errors (httpx, OSError,
JSON, pydantic) are wrapped with ``raise ... from exc`` so the cause stays in tracebacks
while the message stays one line::

    EdgeError                    base of everything the edge agent raises on purpose
     ├── SettingsError           the settings (flags, TETHER_EDGE_* variables) are invalid
     ├── ActivationError         the token exchange failed: refused, unreachable, bad answer
     ├── NotActivated            no identity in the data dir: run `tether edge activate`
     ├── IdentityError           the identity file exists but cannot be read or written
     ├── CacheError              the cache file cannot be read or written
     ├── AlreadyRunning          another agent holds the data dir's lock
     ├── RenewalError            retryable: renewing the node's certificate failed
     ├── BrokerUnavailable       retryable: the broker cannot be reached or refused us;
     │                           ``retry_after`` says when the next attempt is due
     ├── BackendError            a backend could not apply, remove or observe an app;
     │                           ``retry_after`` set when trying again may help
     └── UpgradeError            the agent's self-upgrade could not fetch, verify, install
                                 or switch to a version (reported as its cause)
"""

from __future__ import annotations


class EdgeError(Exception):
    """Base class of the edge agent's errors; ``str(exc)`` is a one-line message."""


class SettingsError(EdgeError):
    """The edge settings are invalid."""


class ActivationError(EdgeError):
    """Exchanging the one-time token for an identity failed."""


class NotActivated(EdgeError):
    """The data dir holds no identity yet."""

    def __init__(self, message: str | None = None) -> None:
        super().__init__(
            message
            or "this node is not activated: run `tether edge activate --cloud URL --token T`"
        )


class IdentityError(EdgeError):
    """The identity file is unreadable, malformed or cannot be written."""


class CacheError(EdgeError):
    """The cache file is unreadable or cannot be written."""


class AlreadyRunning(EdgeError):
    """Another edge agent already uses this data dir."""


class RenewalError(EdgeError):
    """Renewing the node's client certificate failed; the current one is still used."""


class BrokerUnavailable(EdgeError):
    """The broker could not be reached or refused the connection; retry later."""

    def __init__(self, message: str, *, retry_after: float) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class BackendError(EdgeError):
    """A backend could not carry out an action; ``retry_after`` (seconds) if it may pass."""

    def __init__(self, message: str, *, retry_after: float | None = None) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class UpgradeError(EdgeError):
    """The agent's own upgrade failed at a step; the message is the cause the node reports."""
