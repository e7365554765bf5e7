"""Function apps on the edge: Tether's Python function runtime and the node's proxy.

A function app (``App.type == "function"``) is code in a config plus a runtime process
per replica; every invocation passes through the node's one proxy. Where things are:

    errors      FunctionError and its codes (404, 502, 504, ...), ProxyError
    directory   FunctionDirectory: the runtimes' announce files; runtime_command()
    runtime     the runtime process (``python -m edge_runtime.functions.runtime``)
    calling     FunctionCaller: pick an instance, POST, map failures (the proxy's logic)
    proxy       FunctionProxy: ``POST /{app}/{function}`` on 127.0.0.1:50011
    invoking    FunctionInvoker: the MQTT ``invoke``/``result`` topics

This file stays import-free (the runtime process imports as little as it can).
"""
