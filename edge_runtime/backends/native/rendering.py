"""An app bundle as the local processes and files that run it: the native backend's plan.

``render`` turns one ``AppBundle`` into a ``ServiceSpec`` per service -- argv, env,
working directory, replicas and the files of its volume mounts -- and a digest of all
that (replicas aside). The backend restarts a service's processes only when its digest
changes, so a new app version that changes nothing a process sees restarts nothing.

The mapping of the app model onto one machine, for app ``A``, service ``S``, all under
``DATA_DIR/apps/A/``:

- working directory ``S/`` (so ``DATA_DIR/apps/A/S/``); processes run ``command + args``
  (the command is looked up in ``PATH``; relative paths are relative to the working dir);
- env: a minimal, fixed environment (``PATH=/usr/local/sbin:...:/bin``, ``HOME`` = the
  working dir, ``LANG=C.UTF-8``) plus ``TETHER_APP``, ``TETHER_SERVICE``,
  ``TETHER_PROPERTIES`` (the node's ``properties.json``), ``TETHER_FUNCTION_HANDLER``
  for function services and one ``TETHER_VOLUME_{NAME}`` per mounted volume (the volume
  name upper-cased, ``-`` as ``_``) holding its absolute directory; the service's own
  ``env`` goes over all of these. Each process also gets ``TETHER_REPLICA`` (0, 1, ...);
- a volume mount's ``mountPath`` is made relative to the working dir (``/etc/app`` ->
  ``S/etc/app``; ``..`` and the working dir itself are refused): a config is one file
  per key there (0644, in a 0755 dir), a secret the same as 0600 files in a 0700 dir, a
  certificate ``tls.crt`` and ``tls.key`` (0600, in a 0700 dir), a hostPath a symlink to
  the host path, an emptyDir a directory kept until the app is removed. ``readOnly`` is
  not enforced (processes run as the agent's user);
- registries are ignored: processes pull no images.

A function service (``type: function``, a ``handler``, no ``command``) runs Tether's
function runtime (``edge_runtime.functions``), one per replica, with the config mount
holding the handler's module as its code dir; replica ``i`` announces itself in
``DATA_DIR/functions/{app}/{service}/{i}.json`` for the node's function proxy, and gets
``TETHER_FUNCTION_APP``/``TETHER_FUNCTION_NAME`` too. Any other service with an ``image``
and no ``command`` cannot run as a process: ``BackendError`` ("image-only service needs
the kube backend"), raised before anything is touched. Pure.
"""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import asdict, dataclass, field, replace
from itertools import pairwise
from pathlib import Path, PurePosixPath

from edge_runtime.backends.base import AppBundle, function_code_mount
from edge_runtime.errors import BackendError
from edge_runtime.functions.directory import (
    APP_ENV,
    FUNCTIONS_DIRNAME,
    HANDLER_ENV,
    NAME_ENV,
    runtime_command,
)
from edge_runtime.settings import PROPERTIES_FILENAME
from schemas.resources import AppType, Service, Volume

APPS_DIRNAME = "apps"
REPLICA = "{replica}"
MINIMAL_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
PROPERTIES_ENV = "TETHER_PROPERTIES"
_FILE_NAME = re.compile(r"[-._a-zA-Z0-9]{1,253}")


@dataclass(frozen=True)
class Mount:
    """One volume mount of a service, ``path`` relative to the app dir."""

    volume: str
    path: str
    kind: str  # config | secret | certificate | hostPath | emptyDir
    files: dict[str, str] = field(default_factory=dict)  # file name -> content
    target: str = ""  # hostPath: what the symlink points to

    @property
    def private(self) -> bool:
        return self.kind in ("secret", "certificate")


@dataclass(frozen=True)
class ServiceSpec:
    """How to run one service's processes; ``digest`` covers all of it but ``replicas``."""

    name: str
    argv: list[str]
    env: dict[str, str]
    workdir: str  # relative to the app dir
    replicas: int
    mounts: list[Mount] = field(default_factory=list)
    function: bool = False  # Tether's function runtime: ``REPLICA`` in argv is the replica
    digest: str = ""

    def argv_of(self, replica: int) -> list[str]:
        """The argv of one replica (a function runtime announces itself per replica)."""
        return [a.replace(REPLICA, str(replica)) for a in self.argv] if self.function else self.argv


def digest(spec: ServiceSpec) -> str:
    """What a process sees of ``spec``: argv, env, working dir and mounted content."""
    body = asdict(spec)
    del body["replicas"], body["digest"]
    return hashlib.sha256(json.dumps(body, sort_keys=True).encode()).hexdigest()[:16]


def volume_env(name: str) -> str:
    return "TETHER_VOLUME_" + name.upper().replace("-", "_")


def mount_dir(service: str, mount_path: str) -> str:
    """``mountPath`` made relative to the service's working dir, as a path under the app dir."""
    parts = [p for p in PurePosixPath(mount_path).parts if p not in ("/", ".")]
    if not parts or ".." in parts:
        raise BackendError(f"mountPath {mount_path!r} of service {service!r} must name a "
                           "directory below the working directory (no '..')")
    return "/".join((service, *parts))


def render(bundle: AppBundle, *, data_dir: Path) -> list[ServiceSpec]:
    """The spec of every service of ``bundle``; raises ``BackendError`` if one cannot run."""
    return [_service(bundle, service, data_dir=data_dir) for service in bundle.app.services]


def _service(bundle: AppBundle, service: Service, *, data_dir: Path) -> ServiceSpec:
    function = bundle.app.type is AppType.FUNCTION and service.handler is not None
    if not service.command and not function:
        if service.image:
            raise BackendError(f"service {service.name!r} has only an image ({service.image}): "
                               "image-only service needs the kube backend")
        raise BackendError(f"service {service.name!r} has no command to run")
    app_dir = data_dir / APPS_DIRNAME / bundle.name
    volumes = {volume.name: volume for volume in bundle.app.volumes}
    mounts = [_mount(bundle, volumes[m.name], service=service.name, mount_path=m.mount_path)
              for m in service.volume_mounts]
    paths = sorted(mount.path for mount in mounts)
    for shorter, longer in pairwise(paths):
        if longer == shorter or longer.startswith(shorter + "/"):
            raise BackendError(f"service {service.name!r} mounts two volumes at overlapping paths")
    workdir = app_dir / service.name
    env = {"PATH": MINIMAL_PATH, "HOME": str(workdir), "LANG": "C.UTF-8",
           "TETHER_APP": bundle.name, "TETHER_SERVICE": service.name,
           PROPERTIES_ENV: str(data_dir / PROPERTIES_FILENAME)}
    if function and service.handler:
        env.update({HANDLER_ENV: service.handler, APP_ENV: bundle.name, NAME_ENV: service.name})
    for mount in mounts:
        env[volume_env(mount.volume)] = mount.target or str(app_dir / mount.path)
    env.update(service.env)
    argv = [*service.command, *service.args]
    if not service.command and service.handler:  # a function with Tether's own runtime
        announce = data_dir / FUNCTIONS_DIRNAME / bundle.name / service.name / f"{REPLICA}.json"
        code = function_code_mount(bundle, service)
        code_dir = app_dir / mount_dir(service.name, code.mount_path)
        argv = runtime_command(code_dir=code_dir, handler=service.handler, announce=announce)
    spec = ServiceSpec(name=service.name, argv=argv, env=env, workdir=service.name,
                       replicas=service.replicas, mounts=mounts, function=not service.command)
    return replace(spec, digest=digest(spec))


def _mount(bundle: AppBundle, volume: Volume, *, service: str, mount_path: str) -> Mount:
    path = mount_dir(service, mount_path)
    pinned = volume.pinned()
    if pinned is not None and pinned[1].name not in _section(bundle, pinned[0].value):
        raise BackendError(f"the bundle lacks {pinned[0].value} {pinned[1].name!r}")
    if volume.config is not None:
        return Mount(volume.name, path, "config", _files(bundle.configs[volume.config.name].data))
    if volume.secret is not None:
        return Mount(volume.name, path, "secret", _files(bundle.secrets[volume.secret.name].data))
    if volume.certificate is not None:
        cert = bundle.certificates[volume.certificate.name]
        return Mount(volume.name, path, "certificate",
                     {"tls.crt": cert.certificate, "tls.key": cert.private_key})
    if volume.host_path is not None:
        return Mount(volume.name, path, "hostPath", target=volume.host_path.path)
    return Mount(volume.name, path, "emptyDir")


def _section(bundle: AppBundle, kind: str) -> dict[str, object]:
    sections: dict[str, dict[str, object]] = {
        "config": dict(bundle.configs), "secret": dict(bundle.secrets),
        "certificate": dict(bundle.certificates)}
    return sections[kind]


def _files(data: dict[str, str]) -> dict[str, str]:
    for key in data:
        if not _FILE_NAME.fullmatch(key) or key in (".", ".."):
            raise BackendError(
                f"key {key!r} cannot be a file name (use letters, digits, '-', '_', '.')")
    return dict(data)
