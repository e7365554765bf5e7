"""Names, labels and annotations Tether puts on the Kubernetes objects it owns.

Everything the backend later finds again -- to prune, remove or observe an app -- it
finds by what this module writes, so the scheme lives in one place:

* **names** are ``{app}-{part...}-{hash}``: readable, DNS-1035 labels of at most 63
  characters, and unique between apps. Joining names with ``-`` alone is ambiguous (app
  ``a-b`` service ``c`` and app ``a`` service ``b-c`` would both be ``a-b-c``), so a short
  hash of the unjoined parts always ends the name; long names are cut before the hash.
* **labels** on every object and pod template: ``app.kubernetes.io/managed-by=tether``
  (nothing without it is ever touched), ``tether.io/app``, ``tether.io/version`` (the
  version made a valid label value) and ``tether.io/service`` on per-service objects.
* **annotations**: ``tether.io/version`` holds the raw, opaque version (observe reads it),
  ``tether.io/config-hash`` on pod templates the hash of the mounted configs and secrets,
  ``tether.io/function`` on the Service of a function service the runtime's port.

Pure: strings in, strings and dicts out.
"""

from __future__ import annotations

import hashlib
import re

MANAGED_BY = "app.kubernetes.io/managed-by"
MANAGER = "tether"
APP = "tether.io/app"
VERSION = "tether.io/version"
SERVICE = "tether.io/service"
CONFIG_HASH = "tether.io/config-hash"
FUNCTION = "tether.io/function"

MAX_NAME = 63
HASH_LENGTH = 8
_LABEL_VALUE = re.compile(r"^(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?$")
_NOT_LABEL_CHARS = re.compile(r"[^-A-Za-z0-9_.]+")


def digest(text: str, length: int = HASH_LENGTH) -> str:
    """A short, stable hex digest of ``text``."""
    return hashlib.sha256(text.encode()).hexdigest()[:length]


def object_name(app: str, *parts: str) -> str:
    """The name of one object of ``app``: ``{app}-{parts}-{hash}``, a DNS-1035 label.

    ``parts`` say which object (``("api",)`` for a service's workload, ``("cfg",
    "settings")`` for a config); the hash is over the parts unjoined, so two different
    (app, parts) tuples never share a name even where their joined text is the same.
    A leading digit (app names may start with one; Service names may not) gets a ``t``.
    """
    suffix = digest("\0".join((app, *parts)))
    readable = "-".join((app, *parts))
    if readable[0].isdigit():
        readable = "t" + readable
    readable = readable[: MAX_NAME - HASH_LENGTH - 1].rstrip("-")
    return f"{readable}-{suffix}"


def label_value(text: str) -> str:
    """``text`` if it is a valid label value, else a readable form with a hash suffix."""
    if len(text) <= MAX_NAME and _LABEL_VALUE.match(text):
        return text
    readable = _NOT_LABEL_CHARS.sub("-", text)[: MAX_NAME - HASH_LENGTH - 1]
    readable = readable.strip("-_.")
    return f"{readable}-{digest(text)}" if readable else digest(text)


def selector_labels(app: str, service: str) -> dict[str, str]:
    """What a service's workload selects its pods (and its Service its endpoints) by.

    Never the version: a Deployment's selector is immutable, and a new version must
    update the Deployment in place, not need a new one.
    """
    return {MANAGED_BY: MANAGER, APP: app, SERVICE: service}


def app_labels(app: str, version: str, *, service: str | None = None) -> dict[str, str]:
    """The labels of every object (and pod template) of one version of one app."""
    labels = {MANAGED_BY: MANAGER, APP: app, VERSION: label_value(version)}
    if service is not None:
        labels[SERVICE] = service
    return labels


def managed_selector(app: str | None = None) -> str:
    """The label selector of everything Tether manages, or of one app of it."""
    selector = f"{MANAGED_BY}={MANAGER}"
    return f"{selector},{APP}={app}" if app is not None else selector


def metadata(
    name: str, namespace: str, labels: dict[str, str], *, version: str
) -> dict[str, object]:
    """``metadata`` of an object Tether owns: labels, and the raw version annotated."""
    return {
        "name": name,
        "namespace": namespace,
        "labels": labels,
        "annotations": {VERSION: version},
    }
