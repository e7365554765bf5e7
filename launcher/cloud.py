"""``tether cloud``: the cloud's own commands, with ``--embedded-broker`` wired in.

``cloud_api`` may not import ``broker`` (DESIGN §1); this module, the composition root,
hands ``cloud_api.cli`` a factory that runs the embedded broker in the same process.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from contextlib import contextmanager

import cloud_api.cli
from broker.embedded import run_in_thread
from broker.errors import BrokerError
from broker.settings import BrokerSettings
from cloud_api.errors import ConfigError


@contextmanager
def embedded_broker(
    host: str, port: int, topic_root: str, authenticate: Callable[[str | None, str | None], bool]
) -> Iterator[str]:
    for chatty in ("transitions", "amqtt"):  # state-machine chatter at INFO
        logging.getLogger(chatty).setLevel(max(logging.WARNING, logging.getLogger().level))
    try:
        with run_in_thread(BrokerSettings(host=host, port=port, topic_root=topic_root), authenticate) as broker:
            yield broker.url
    except BrokerError as exc:
        raise ConfigError(str(exc)) from exc


cloud_api.cli.embedded_broker_factory = embedded_broker
app = cloud_api.cli.app
