"""The agent's self-upgrade (``desired.sysapps.tether``, the Baetyl "sysapps" idea).

    home          DATA_DIR/agent: venvs, the current/trial/trying links, the launcher,
                  the upgrade's state file
    installing    fetch and verify a wheel; build a venv for it beside the running one
    base          UpgraderBase: the target, the thread and the report both upgraders share
    native        NativeUpgrader: install, boot once on trial, commit or roll back
    kube          KubeUpgrader: a new image on the agent's Deployment, rolled back if unhealthy
    wiring        the Upgrader interface the agent drives, and the reconciler that feeds it

This file stays import-free so that importing one module does not pull in the others.
"""
