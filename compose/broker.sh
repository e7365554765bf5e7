#!/bin/sh
# The MQTT broker of compose/docker-compose.yml: Mosquitto with the configuration
# `tether broker mosquitto-config` writes (an mTLS listener for nodes, certificates from
# the cloud's CA; a loopback password listener for the cloud's bridge), its CRL kept
# current by `tether broker crl-sync`. Runs as root in the Tether image, in the cloud's
# network namespace (so the bridge reaches 127.0.0.1:$BRIDGE_PORT); Mosquitto drops to
# its own user. Mosquitto runs in the foreground: when it exits, the container does.
# tests/test_compose.py runs this script against a real cloud, on free ports.
set -eu

DATA=${DATA:-/var/lib/tether}             # the cloud's --data-dir (shared volume): ca/, bridge.secret, admin.token
API=${API:-http://127.0.0.1:9080}         # the cloud's API, which serves the CRL
CONF=${CONF:-/etc/mosquitto/tether}       # Mosquitto's configuration, with copies of the TLS files
RUN=${RUN:-/run/mosquitto}                # its pid file, for crl-sync
TLS_PORT=${TLS_PORT:-8883}                # nodes, mTLS
BRIDGE_PORT=${BRIDGE_PORT:-1884}          # the cloud's bridge, password, on 127.0.0.1
BROKER_HOSTS=${BROKER_HOSTS:-localhost}   # names nodes reach the broker by, comma-separated
CRL_INTERVAL=${CRL_INTERVAL:-60}          # seconds between CRL fetches

for wanted in "$DATA/ca/ca.crt" "$DATA/bridge.secret" "$DATA/admin.token"; do
  if [ ! -f "$wanted" ]; then
    echo "broker.sh: no $wanted: start the cloud on this data dir first" >&2
    exit 1
  fi
done

set --
for host in $(echo "$BROKER_HOSTS" | tr ',' ' '); do
  set -- "$@" --host "$host"
done
tether cloud server-certificate --data-dir "$DATA" --output "$DATA/broker-tls" "$@"
tether broker mosquitto-config --output "$CONF" --cafile "$DATA/ca/ca.crt" \
  --certfile "$DATA/broker-tls/tether-broker.crt" --keyfile "$DATA/broker-tls/tether-broker.key" \
  --tls-port "$TLS_PORT" --crl-file "$CONF/crl.pem" --pid-file "$RUN/tether.pid" \
  --password-port "$BRIDGE_PORT" --password-file "$CONF/passwd"
rm -f "$CONF/passwd"
mosquitto_passwd -b -c "$CONF/passwd" tether-cloud "$(cat "$DATA/bridge.secret")"
chmod 0640 "$CONF/passwd"
chgrp "$(id -gn mosquitto)" "$CONF/passwd"
TOKEN=$(cat "$DATA/admin.token")
tether broker crl-sync --once --server "$API" --token "$TOKEN" \
  --cafile "$DATA/ca/ca.crt" --out "$CONF/crl.pem"
tether broker crl-sync --server "$API" --token "$TOKEN" --cafile "$DATA/ca/ca.crt" \
  --out "$CONF/crl.pem" --mosquitto-pid-file "$RUN/tether.pid" --interval "$CRL_INTERVAL" &
exec mosquitto -c "$CONF/mosquitto.conf"
