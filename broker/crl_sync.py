"""Keep Mosquitto's ``crlfile`` equal to the cloud's CRL: fetch, replace atomically, reload.

Why it exists: the embedded broker asks the cloud about every certificate, so a revoked
node is refused at once. Mosquitto only checks a certificate's chain and a CRL file; it
cannot ask. ``tether broker crl-sync`` fetches ``GET /v1/broker/crl`` (admin token) and
keeps that file current, so a revoked node is refused at its next TLS handshake instead
of when its certificate expires.

What Mosquitto does with the file (2.0.11 and OpenSSL 3.0 measured, see
``tests/broker/test_mosquitto_crl.py``; the source calls ``net__load_certificates``,
which loads ``crlfile``, from ``listeners__reload_all_certificates`` on SIGHUP):

- SIGHUP re-reads ``crlfile``: new handshakes are checked against the new list; no
  restart is needed. Connections already open are *not* checked again (the cloud cuts
  those off itself: ``cloud_api.mqtt.kicking``).
- A missing or unreadable ``crlfile`` stops Mosquitto from starting (so run
  ``crl-sync --once`` before it); at a reload the old list stays in force.
- A list past its ``next_update``, or from another CA, makes every handshake fail, so
  the file is replaced well before it expires (:func:`needs_update`), and a list must
  parse (and, given ``--cafile``, bear that CA's signature) before it is installed.

"Changed" means the revoked serials differ, not the bytes: the cloud signs each answer
anew (a fresh time, a randomized ECDSA signature). A list that is merely older than half
its lifetime is replaced too, and Mosquitto reloaded, so it never expires while the
cloud answers.

Errors (all :class:`~broker.errors.BrokerError`, one line that says what to do)::

    CrlSyncError            the operator must act: a bad token, a wrong URL, a path
    └── CloudUnreachable    worth retrying: no answer, or a 5xx/429 from the cloud
"""

from __future__ import annotations

import datetime as dt
import os
import secrets
import signal
import ssl
from dataclasses import dataclass
from pathlib import Path

import httpx
from cryptography import x509

from broker.errors import BrokerError

__all__ = [
    "CloudUnreachable",
    "CrlSyncError",
    "SyncOutcome",
    "crl_url",
    "fetch_crl",
    "needs_update",
    "reload_mosquitto",
    "sync_once",
    "trust",
    "write_atomically",
]

CRL_PATH = "/v1/broker/crl"
TIMEOUT_SECONDS = 10.0


class CrlSyncError(BrokerError):
    """The CRL could not be fetched or installed; the message says what to change."""


class CloudUnreachable(CrlSyncError):
    """The cloud did not answer, or answered 5xx/429: retry later, keep the last good CRL."""


@dataclass(frozen=True)
class SyncOutcome:
    """What one sync did: the file written or left alone, Mosquitto signalled or not."""

    revoked: int
    written: bool
    reloaded_pid: int | None = None
    note: str | None = None
    """Why Mosquitto was not signalled although the file changed (it is not running)."""


def crl_url(server: str) -> str:
    return server.rstrip("/") + CRL_PATH


def trust(cafile: Path) -> ssl.SSLContext:
    """The system's CAs plus ``cafile``: an API served with a certificate of the cloud's
    own CA (``tether cloud serve --tls-generate``) is trusted, and so is a public one."""
    context = ssl.create_default_context()
    try:
        context.load_verify_locations(cafile)
    except (OSError, ssl.SSLError) as exc:
        raise CrlSyncError(f"cannot read a CA certificate from {cafile}: check --cafile") from exc
    return context


def fetch_crl(
    server: str,
    token: str,
    *,
    issuer: x509.Certificate | None = None,
    verify: ssl.SSLContext | bool = True,
    timeout: float = TIMEOUT_SECONDS,
    transport: httpx.BaseTransport | None = None,
) -> bytes:
    """The cloud's CRL (PEM bytes), checked to parse and, with ``issuer``, to be signed by it."""
    url = crl_url(server)
    headers = {"Authorization": f"Bearer {token}"}
    try:
        with httpx.Client(timeout=timeout, transport=transport, verify=verify) as client:
            response = client.get(url, headers=headers)
    except httpx.HTTPError as exc:
        if "CERTIFICATE_VERIFY_FAILED" in str(exc):
            raise CrlSyncError(
                f"{url} presented a certificate this host does not trust: pass the cloud's CA "
                "with --cafile (DATA_DIR/ca/ca.crt)"
            ) from exc
        raise CloudUnreachable(
            f"no answer from {url} ({exc}): check --server and that the cloud is up"
        ) from exc
    status = response.status_code
    if status == httpx.codes.UNAUTHORIZED:
        raise CrlSyncError(f"{url} refused the token (401): pass the cloud's admin token (--token)")
    if status == httpx.codes.FORBIDDEN:
        raise CrlSyncError(f"{url} answered 403: the token is not an admin token")
    if status == httpx.codes.NOT_FOUND:
        raise CrlSyncError(f"{url} answered 404: --server must be the cloud's base URL")
    if status == httpx.codes.TOO_MANY_REQUESTS or status >= 500:
        raise CloudUnreachable(f"{url} answered {status}: the cloud is busy or failing")
    if status != httpx.codes.OK:
        raise CrlSyncError(f"{url} answered {status}: check --server")
    try:
        crl = x509.load_pem_x509_crl(response.content)
    except ValueError as exc:
        raise CrlSyncError(f"{url} did not answer a PEM CRL: check --server") from exc
    if issuer is not None and not _signed_by(crl, issuer):
        raise CrlSyncError(
            f"the CRL from {url} is not signed by the CA of --cafile: Mosquitto would refuse "
            "every node with it; check --server and --cafile"
        )
    return response.content


def _signed_by(crl: x509.CertificateRevocationList, issuer: x509.Certificate) -> bool:
    try:
        valid = crl.is_signature_valid(issuer.public_key())  # type: ignore[arg-type]
    except TypeError:  # a key that cannot sign (X25519...) is no CA's
        return False
    return crl.issuer == issuer.subject and valid


def needs_update(current: bytes | None, fetched: bytes, *, now: dt.datetime) -> bool:
    """Whether ``fetched`` must replace the CRL ``current`` (None: there is no file yet).

    Yes if the file is missing or unreadable, names another issuer (name or key) or other
    serials, or has used up half its lifetime (so it is replaced long before Mosquitto
    would refuse everyone with it).
    """
    if current is None:
        return True
    try:
        old = x509.load_pem_x509_crl(current)
    except ValueError:
        return True
    new = x509.load_pem_x509_crl(fetched)
    if _issuer(old) != _issuer(new) or _serials(old) != _serials(new):
        return True
    expires = old.next_update_utc
    if expires is None:
        return True
    halfway = old.last_update_utc + (expires - old.last_update_utc) / 2
    return now >= halfway


def _issuer(crl: x509.CertificateRevocationList) -> tuple[x509.Name, bytes | None]:
    """The issuer's name and key id: a CA made anew under the same name is another issuer."""
    try:
        extension = crl.extensions.get_extension_for_class(x509.AuthorityKeyIdentifier)
        key_id = extension.value.key_identifier
    except x509.ExtensionNotFound:
        key_id = None
    return crl.issuer, key_id


def _serials(crl: x509.CertificateRevocationList) -> frozenset[int]:
    return frozenset(entry.serial_number for entry in crl)


def write_atomically(path: Path, data: bytes, *, mode: int = 0o644) -> None:
    """Replace ``path`` with ``data`` (``mode``): temp file, fsync, rename, fsync the dir.

    A reader (Mosquitto at a reload) sees the old file or the new one, never a part.
    """
    temporary = path.with_name(f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}")
    try:
        fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode)
        try:
            with os.fdopen(fd, "wb") as handle:
                handle.write(data)
                handle.flush()
                os.fchmod(handle.fileno(), mode)  # whatever the umask
                os.fsync(handle.fileno())
            os.replace(temporary, path)
        finally:
            temporary.unlink(missing_ok=True)
        directory = os.open(path.parent, os.O_RDONLY)
        try:
            os.fsync(directory)
        finally:
            os.close(directory)
    except OSError as exc:
        raise CrlSyncError(f"cannot write {path}: {exc.strerror or exc}; check --out") from exc


def reload_mosquitto(pid_file: Path) -> int | None:
    """SIGHUP to the pid in ``pid_file``: Mosquitto re-reads its ``crlfile``.

    Returns the pid, or None when Mosquitto is not running (no pid file, or a stale one):
    it reads the new file when it starts.
    """
    try:
        text = pid_file.read_text(encoding="ascii").strip()
    except FileNotFoundError:
        return None
    except (OSError, UnicodeDecodeError) as exc:
        raise CrlSyncError(f"cannot read {pid_file}: {exc}; check --mosquitto-pid-file") from exc
    if not text.isdigit() or int(text) <= 1:
        raise CrlSyncError(f"{pid_file} does not hold a process id: check --mosquitto-pid-file")
    pid = int(text)
    try:
        os.kill(pid, signal.SIGHUP)
    except ProcessLookupError:
        return None
    except PermissionError as exc:
        raise CrlSyncError(
            f"may not signal process {pid} from {pid_file}: "
            "run crl-sync as Mosquitto's user or root"
        ) from exc
    return pid


def read_current(path: Path) -> bytes | None:
    try:
        return path.read_bytes()
    except FileNotFoundError:
        return None
    except OSError as exc:
        raise CrlSyncError(f"cannot read {path}: {exc.strerror or exc}; check --out") from exc


def sync_once(
    server: str,
    token: str,
    out: Path,
    *,
    pid_file: Path | None = None,
    issuer: x509.Certificate | None = None,
    verify: ssl.SSLContext | bool = True,
    transport: httpx.BaseTransport | None = None,
) -> SyncOutcome:
    """Fetch the CRL; if it changed, write ``out`` and SIGHUP Mosquitto (``pid_file``)."""
    fetched = fetch_crl(server, token, issuer=issuer, verify=verify, transport=transport)
    revoked = len(_serials(x509.load_pem_x509_crl(fetched)))
    if not needs_update(read_current(out), fetched, now=dt.datetime.now(dt.UTC)):
        return SyncOutcome(revoked=revoked, written=False)
    write_atomically(out, fetched)
    if pid_file is None:
        return SyncOutcome(revoked=revoked, written=True)
    pid = reload_mosquitto(pid_file)
    if pid is None:
        note = f"Mosquitto is not running (per {pid_file}); it reads {out} when it starts"
        return SyncOutcome(revoked=revoked, written=True, note=note)
    return SyncOutcome(revoked=revoked, written=True, reloaded_pid=pid)
