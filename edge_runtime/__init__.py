"""The edge agent: activation, shadow sync, TinyDB cache, engine and backends.
Imports schemas only.

Where things are (pure logic first, then the shell around it):

    settings      EdgeSettings (TETHER_EDGE_*), handed in explicitly
    errors        the package's error tree (EdgeError and below)
    identity      the node identity file written by activation; load_identity
    activation    activate(cloud_url, token, data_dir): the one-time token exchange
    storage       AtomicJSONStorage: TinyDB writes that survive a kill
    cache         Cache: document, acknowledged and outgoing reported, resources
    reconciling   the Reconciler hook and the stand-in reconciler (node facts, properties)
    incoming      shape checks of what the cloud sends
    transport     the Transport interface and the link's events
    reporting     Outbox: the coalesced reported state, one update in flight
    syncing       ShadowSync: the sync state machine (pure-ish, fake transport in tests)
    sync          MqttLink: paho transport, will, TCP_NODELAY, backoff with jitter
    runner        SyncRunner: the single thread that drives ShadowSync
    agent         EdgeAgent: start/stop/run, wiring all of the above
    upgrading/    the agent's self-upgrade (desired.sysapps.tether): native venvs and
                  launcher, kube Deployment image; see its __init__
    cli           `tether edge activate|run`

This file stays import-free so that importing one module does not pull in the others.
"""
