"""The cloud's one error tree, so REST, the MQTT bridge and the CLI each catch one base.

Every cloud error is a ``schemas.errors.Rejection``: it carries an HTTP-like code from
``ErrorCode`` and a message a user can act on, so the REST handler renders any of them as
``{"code", "message"}`` and the bridge as an MQTT rejection, without a mapping table.

    Rejection (schemas.errors)     an input refused: bad JSON 400, limits 413, 415, 409 ...
     └── CloudError                anything the cloud refuses or fails at
          ├── NotFound             404  no such namespace, node or shadow
          ├── AlreadyExists        409  the name is taken
          ├── Unauthorized         401  missing, unknown, used or expired token or credential
          ├── Forbidden            403  the token lacks the role or the namespace
          ├── StoreError           500  the database failed (wraps SQLAlchemyError)
          ├── BridgeError          500  the MQTT client failed (wraps paho errors)
          ├── ConfigError          500  settings that cannot work: a port in use, a bad URL
          └── Retryable            any error worth retrying; ``retry_after`` seconds
               ├── Busy            429  a compare-and-swap lost too often, a queue is full
               ├── StoreUnavailable 500 the database did not answer (wraps OperationalError)
               └── NodeOffline     503  a call relayed to a node the cloud knows is offline

Library errors are wrapped with ``raise ... from exc`` where they cross into the cloud's
code, so the cause stays in the traceback and callers see only this tree.
"""

from __future__ import annotations

from schemas.errors import ErrorCode, Rejection


class CloudError(Rejection):
    """Base of every error the cloud raises; ``code`` defaults per subclass."""

    default_code: ErrorCode = ErrorCode.INTERNAL

    def __init__(self, message: str, *, code: ErrorCode | None = None) -> None:
        super().__init__(code if code is not None else self.default_code, message)


class NotFound(CloudError):
    default_code = ErrorCode.NOT_FOUND


class AlreadyExists(CloudError):
    default_code = ErrorCode.CONFLICT


class Unauthorized(CloudError):
    default_code = ErrorCode.UNAUTHORIZED


class Forbidden(CloudError):
    default_code = ErrorCode.FORBIDDEN


class StoreError(CloudError):
    default_code = ErrorCode.INTERNAL


class BridgeError(CloudError):
    default_code = ErrorCode.INTERNAL


class ConfigError(CloudError):
    default_code = ErrorCode.INTERNAL


class Retryable(CloudError):
    """An error that may go away: retry after ``retry_after`` seconds."""

    def __init__(
        self, message: str, *, retry_after: float = 1.0, code: ErrorCode | None = None
    ) -> None:
        super().__init__(message, code=code)
        self.retry_after = retry_after


class Busy(Retryable):
    default_code = ErrorCode.TOO_MANY_REQUESTS


class StoreUnavailable(Retryable):
    """The database does not answer (down, restarting, unreachable): 503 with Retry-After,
    which clients and nodes retry; a database error that is a bug stays ``StoreError`` (500)."""

    default_code = ErrorCode.UNAVAILABLE


class NodeOffline(Retryable):
    """A relayed call refused at once: the node's last status said offline (or it never
    connected), so waiting for its answer would only run out the relay's timeout."""

    default_code = ErrorCode.UNAVAILABLE
