"""What the REST API and the bridge share in one process: settings, store, metrics, publisher.

``Cloud`` (``runtime.py``) builds one ``Context`` and hands it to ``create_app``; routes
reach it through ``deps.py``. ``publisher`` is the bridge while it runs and a
``NullPublisher`` otherwise, so REST works (and is tested) with no broker at all.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field

from cloud_api.metrics import Metrics
from cloud_api.mqtt.bridge import Bridge
from cloud_api.mqtt.functions import FunctionRelay
from cloud_api.mqtt.log_relay import LogRelay
from cloud_api.mqtt.share_probing import ShareProbe
from cloud_api.mqtt.transport import NullPublisher, Publisher
from cloud_api.rematching import Rematcher
from cloud_api.services.mqtt_auth import authenticate_mqtt
from cloud_api.settings import CloudSettings
from cloud_api.store.engine import Store


@dataclass
class Context:
    settings: CloudSettings
    store: Store
    bridge_password: str
    metrics: Metrics = field(default_factory=Metrics)
    publisher: Publisher = field(default_factory=NullPublisher)
    bridge: Bridge | None = None
    functions: FunctionRelay = field(default_factory=FunctionRelay)  # invocations in flight
    logs: LogRelay = field(default_factory=LogRelay)  # log streams open
    clock: Callable[[], float] = time.time
    rematcher: Rematcher | None = None  # does the matching writes owe, in the background
    share_probe: ShareProbe | None = None  # with a share group: does the broker deliver?

    def now(self) -> int:
        """Epoch seconds, the unit of every timestamp the cloud stores and sends."""
        return int(self.clock())

    def matching_owed(self) -> None:
        """A write stored a ``PendingMatch``: have it done now (else the next poll does)."""
        if self.rematcher is not None:
            self.rematcher.notify()

    def authenticate_mqtt(self, username: str | None, password: str | None) -> bool:
        """Whether a broker client may connect: the bridge, or a node with its password."""
        with self.store.session() as session:
            return authenticate_mqtt(
                session,
                username,
                password,
                bridge_username=self.settings.mqtt_username,
                bridge_password=self.bridge_password,
            )
