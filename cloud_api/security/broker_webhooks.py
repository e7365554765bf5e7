"""The two contracts by which a broker asks the cloud about a client, translated to Tether's.

A broker that cannot be told Tether's rules in a file asks over HTTP at every connect
and every new topic: RabbitMQ through ``rabbitmq_auth_backend_http``, EMQX through its
HTTP authenticator and authorizer. Both are served by the cloud
(``cloud_api.rest.routes.broker``), so node passwords never leave it, and a revoked node
(whose credentials are gone) is refused at its next connect.

This module is the translation, pure: each function takes the parameters the broker sent
and an ``Access`` (``cloud_api.services.mqtt_auth.BrokerAccess``) and returns the broker's
own answer. Nothing here knows HTTP or the database.

RabbitMQ (``auth_http.*_path``, form or query parameters, answers ``allow``/``deny``):

- ``user``: ``username``, ``password`` (absent when ``mqtt.ssl_cert_login`` mapped a
  client certificate to its CN);
- ``vhost``: ``username``, ``vhost``, ``ip``;
- ``resource``: ``username``, ``vhost``, ``resource`` (``exchange``/``queue``), ``name``,
  ``permission`` (``configure``/``write``/``read``). The MQTT plugin publishes to the
  ``amq.topic`` exchange and keeps each client's subscriptions in queues
  ``mqtt-subscription-CLIENTIDqos0|1``; a node gets exactly those;
- ``topic``: the same plus ``routing_key``, the MQTT topic (or filter) with ``/`` and ``.``
  swapped and ``+`` written ``*``; ``write`` is a publish, ``read`` a subscribe.
  ``variable_map.client_id`` names the client where the broker sends it.

EMQX (JSON body the operator configures, answers ``{"result": "allow"|"deny"}``):

- authentication: ``{"username", "password", "clientid", "cert_common_name"}``; without a
  password, a verified certificate whose CN is the username logs in;
- authorization: ``{"username", "clientid", "action": "publish"|"subscribe"|"all",
  "topic"}``.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Protocol

ALLOW, DENY = "allow", "deny"
MQTT_EXCHANGE = "amq.topic"  # rabbitmq_mqtt's default ``mqtt.exchange``
MQTT_QUEUE_PREFIX = "mqtt-subscription-"


class Access(Protocol):
    def login(self, username: str | None, password: str | None, *,
              client_id: str | None = None) -> bool: ...

    def owns_client_id(self, username: str, client_id: str) -> bool: ...

    def may_publish(self, username: str | None, topic: str) -> bool: ...

    def may_subscribe(self, username: str | None, topic_filter: str) -> bool: ...

    def known(self, username: str | None) -> bool: ...


def _answer(allowed: bool) -> str:
    return ALLOW if allowed else DENY


# -- RabbitMQ ---------------------------------------------------------------------------
def mqtt_topic_of(routing_key: str) -> str:
    """The MQTT topic (or filter) behind a rabbitmq_mqtt routing (binding) key: the
    plugin swaps ``/`` and ``.`` and writes ``+`` as ``*`` (``#`` stays ``#``)."""
    swapped = routing_key.translate(str.maketrans("./", "/."))
    return "/".join("+" if level == "*" else level for level in swapped.split("/"))


def rabbitmq_user(access: Access, params: Mapping[str, str]) -> str:
    return _answer(access.login(params.get("username"), params.get("password"),
                                client_id=params.get("client_id") or None))


def rabbitmq_vhost(access: Access, params: Mapping[str, str]) -> str:
    return _answer(access.known(params.get("username")))


def rabbitmq_resource(access: Access, params: Mapping[str, str], *, bridge_username: str) -> str:
    username = params.get("username")
    if username == bridge_username:
        return ALLOW
    if not access.known(username):
        return DENY
    resource, name, permission = (params.get(key, "") for key in ("resource", "name", "permission"))
    if resource == "exchange":  # publish to and bind from the MQTT exchange, never declare
        return _answer(name == MQTT_EXCHANGE and permission in ("read", "write"))
    if resource == "queue":  # its own subscription queues (the topic check confines them)
        client_id = name.removeprefix(MQTT_QUEUE_PREFIX).removesuffix("qos0").removesuffix("qos1")
        return _answer(name.startswith(MQTT_QUEUE_PREFIX) and username is not None
                       and access.owns_client_id(username, client_id))
    return DENY


def rabbitmq_topic(access: Access, params: Mapping[str, str]) -> str:
    username = params.get("username")
    if params.get("resource", "topic") != "topic" or params.get("name", MQTT_EXCHANGE) != MQTT_EXCHANGE:
        return DENY
    topic = mqtt_topic_of(params.get("routing_key", ""))
    permission = params.get("permission")
    if permission == "write":
        return _answer(access.may_publish(username, topic))
    if permission == "read":
        return _answer(access.may_subscribe(username, topic))
    return DENY


# -- EMQX -------------------------------------------------------------------------------
def _text(body: Mapping[str, object], key: str) -> str | None:
    value = body.get(key)
    return value if isinstance(value, str) and value not in ("", "undefined") else None


def emqx_authenticate(access: Access, body: Mapping[str, object]) -> dict[str, object]:
    """``{"result", "is_superuser": false}``: a password, or a certificate whose CN is the
    username (EMQX sends ``${cert_common_name}`` only for a verified TLS client)."""
    username, password = _text(body, "username"), _text(body, "password")
    common_name = _text(body, "cert_common_name")
    if password is None and common_name is not None:
        if username not in (None, common_name):
            return {"result": DENY, "is_superuser": False}
        username = common_name
    elif password is None:
        return {"result": DENY, "is_superuser": False}
    allowed = access.login(username, password, client_id=_text(body, "clientid"))
    return {"result": _answer(allowed), "is_superuser": False}


def emqx_authorize(access: Access, body: Mapping[str, object]) -> dict[str, object]:
    username, topic, action = _text(body, "username"), _text(body, "topic"), _text(body, "action")
    if topic is None:
        return {"result": DENY}
    publish = access.may_publish(username, topic)
    subscribe = access.may_subscribe(username, topic)
    allowed = {"publish": publish, "subscribe": subscribe, "all": publish and subscribe}
    return {"result": _answer(allowed.get(action or "", False))}
