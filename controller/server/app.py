"""The ASGI app: routes under /api/v1/, /healthz and /readyz, errors as RFC 9457
problem+json with the command line's one-line messages (and its exit code, as the
extension member `exit_code`). This module assembles it: who the caller is (a bearer
token, a proxy's header or the page's session), the routes of qforge.server.routes, the
page (pages.py), the error handlers (problems.py)."""

import threading
import time
from typing import Annotated, Any

from fastapi import FastAPI, Header, Request
from fastapi.responses import Response

from qforge.auth.roles import Identity
from qforge.auth.tokens import TokenStore
from qforge.server.hub import ProgressHub
from qforge.server.limits import BodyLimit
from qforge.server.metrics import ServerMetrics
from qforge.server.problems import PROBLEMS, install_handlers
from qforge.server.routes import Context, changes, progress, reads, submit
from qforge.server.routes.shapes import API
from qforge.server.security import PROXY_USER_HEADER, Authenticator, RateLimiter
from qforge.server.sessions import COOKIE, CSRF_HEADER, Sessions, load_key
from qforge.service.manager import JobManager
from qforge.service.models import Overview
from qforge.service.overview import STATUS_TTL, OverviewCache
from qforge.service.table import Tables, warm
from qforge.settings import Settings
from qforge.store.jobstore import JobStore

MAX_JSON_BODY = 8 * 1024 * 1024  # any body but a submission's (100,000 ids fit)


class Options:
    def __init__(self, *, trust_proxy_header: bool = False,
                 progress_interval: float = 0.5, warm_tables: int = 0,
                 status_ttl: float = STATUS_TTL) -> None:
        self.trust_proxy_header = trust_proxy_header
        self.progress_interval = progress_interval
        # the page's tables of this many campaigns (changed last) read at start-up
        self.warm_tables = warm_tables
        self.status_ttl = status_ttl  # seconds a status overview is shared by readers


def create_app(settings: Settings, options: Options | None = None) -> FastAPI:
    options = options or Options()
    store = JobStore(settings.jobs_dir)
    tokens = TokenStore(settings.jobs_dir)
    auth = Authenticator(tokens, trust_proxy_header=options.trust_proxy_header)
    limiter = RateLimiter(settings.api_rate_limit, settings.api_rate_burst)
    hub = ProgressHub(options.progress_interval)
    sessions = Sessions(tokens, load_key(settings.jobs_dir))
    tables = Tables(store)
    if options.warm_tables:
        threading.Thread(target=warm, args=(tables, options.warm_tables), daemon=True,
                         name="qforge-page-warm").start()
    overviews = OverviewCache(options.status_ttl)
    metrics = ServerMetrics()
    app = FastAPI(title="qforge", version="1", openapi_url=f"{API}/openapi.json",
                  responses=PROBLEMS,
                  docs_url=f"{API}/docs", redoc_url=None,
                  description="xtb calculations as jobs: the front door (docs/server.md). "
                              "Every route but /healthz and /readyz needs "
                              "'Authorization: Bearer <token>'.")
    app.state.metrics = metrics
    app.add_middleware(BodyLimit, limit=MAX_JSON_BODY,
                       exempt=frozenset({("POST", f"{API}/jobs")}))
    install_handlers(app)

    @app.middleware("http")
    async def _measure(request: Request, call_next: Any) -> Response:
        start = time.perf_counter()
        response: Response = await call_next(request)
        route = request.scope.get("route")
        path = getattr(route, "path", "unmatched")
        metrics.observe(request.method, path, response.status_code,
                        time.perf_counter() - start)
        return response

    def identity(request: Request,
                 authorization: Annotated[str | None, Header()] = None,
                 x_auth_request_user: Annotated[str | None, Header(
                     alias=PROXY_USER_HEADER, include_in_schema=False)] = None) -> Identity:
        # The page's session cookie stands in for a bearer token (qforge.server.sessions);
        # a change made with it needs the session's CSRF token and the server's origin.
        cookie = request.cookies.get(COOKIE)
        if authorization is None and cookie is not None and not (
                auth.trust_proxy_header and x_auth_request_user):
            session = sessions.read(cookie)
            if session is not None:
                sessions.check_write(session, request.method,
                                     request.headers.get(CSRF_HEADER),
                                     request.headers.get("origin"),
                                     request.headers.get("host"))
                limiter.take(session.identity.name)
                return session.identity
        who = auth.identify(authorization, x_auth_request_user)
        limiter.take(who.name)
        return who

    def manager(who: Identity) -> JobManager:
        return JobManager(store, who, settings, tables=tables, overviews=overviews)

    ctx = Context(settings=settings, identity=identity, manager=manager, hub=hub)
    # In this order: the paths of the OpenAPI document keep it.
    for routes in (reads, progress, submit, changes):
        app.include_router(routes.router(ctx))

    from qforge.server import pages

    pages.install(app, pages.PageContext(
        sessions=sessions, limiter=limiter, identity=identity, manager=manager))
    return app


__all__ = ["Options", "Overview", "create_app"]
