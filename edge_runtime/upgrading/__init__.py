"""The agent's self-upgrade (``desired.sysapps.tether``, the Baetyl "sysapps" idea).

    home          DATA_DIR/agent: venvs, the current/trial/trying links, the launcher,
                  the upgrade's state file
    installing    fetch and verify a wheel; build a venv for it beside the running one
    native        NativeUpgrader: install, boot once on trial, commit or roll back
    wiring        the Upgrader interface the agent drives, and the reconciler that feeds it

This file stays import-free so that importing one module does not pull in the others.
"""
