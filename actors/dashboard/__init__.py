"""The operator's web dashboard: an ASGI app to serve with ``actorq dashboard`` or mount.

Server-rendered with Starlette and Jinja2, refreshed live by htmx, charted by uPlot; both
scripts ship as static files in this package, so nothing is built with Node to install or
run it. Needs the ``dashboard`` extra (``pip install 'actorq[dashboard]'``).

Example:
    from fastapi import FastAPI
    from actors.dashboard import create_dashboard

    dashboard = create_dashboard("postgresql://app@db/jobs", token="s3cret")
    app = FastAPI(lifespan=lambda app: dashboard.router.lifespan_context(dashboard))
    app.mount("/jobs", dashboard)
"""

from ._app import BULK_LIMIT, QUERY_BOUNDS, Redact, create_dashboard
from ._security import Authorize

__all__ = ["BULK_LIMIT", "QUERY_BOUNDS", "Authorize", "Redact", "create_dashboard"]
