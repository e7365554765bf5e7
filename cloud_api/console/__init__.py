"""The operator's console: a dashboard served by the cloud at ``/ui`` (DESIGN §11).

Server-rendered Jinja2 pages over the same service functions the REST routes call, with
htmx (one vendored file) polling each panel for live updates; every asset is in the
package, nothing comes from a CDN, and nothing is built with Node on the user's machine.
``pages.install_console`` mounts it on the REST app.
"""
