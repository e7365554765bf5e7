"""Private MQTT brokers of every kind Tether claims to work with, each with what it can do.

The conformance suite (``tests/brokers``) runs one set of scenarios against each broker
here. A broker is a :class:`BrokerKind`: a name, a declared set of :class:`Capability`
(what it does that a scenario may need, and for each capability it lacks, why), and
``running(directory, ...)``, a context manager that starts a private instance on free
loopback ports under ``directory`` and yields a :class:`RunningBroker` (its URL). A kind
whose binary is missing says so (``missing``), so a test skips with that reason.

Nothing here touches the machine's own brokers: every instance has its own ports, data
and log directories, and is stopped (with any helper process it needed) when the block
ends.
"""

from __future__ import annotations

from launcher.brokers.kinds import (
    BROKERS,
    BrokerKind,
    Capability,
    RunningBroker,
    broker_kind,
)

__all__ = ["BROKERS", "BrokerKind", "Capability", "RunningBroker", "broker_kind"]
