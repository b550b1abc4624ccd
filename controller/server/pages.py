"""The web page of `qforge server` (docs/page.md): sign-in, the campaigns, a campaign, a
job. The HTML is a shell (templates/), the data comes from small JSON routes under
/ui/api/ that the page's scripts (static/) fetch with the session cookie; every asset
ships in the package and nothing is fetched from elsewhere (the Content-Security-Policy
says so to the browser too)."""


import html
import logging
import re
from collections.abc import Callable
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Annotated, Any
from urllib.parse import parse_qs

from fastapi import Depends, FastAPI, Query, Request
from fastapi.responses import HTMLResponse, JSONResponse, RedirectResponse, Response
from fastapi.staticfiles import StaticFiles

from qforge.auth.roles import Identity
from qforge.record import Status
from qforge.server.security import RateLimiter
from qforge.server.sessions import COOKIE, SESSION_SECONDS, Session, Sessions, same_origin
from qforge.service.manager import JobManager
from qforge.service.models import JobPage
from qforge.service.problems import RateLimited

log = logging.getLogger(__name__)

HERE = Path(__file__).parent
STATIC = HERE / "static"
TEMPLATES = HERE / "templates"
MAX_FORM = 4096
_FIELD = re.compile(r"\{\{(\w+)\}\}")
CSP = ("default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
       "connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'")
HEADERS = {"Content-Security-Policy": CSP, "X-Content-Type-Options": "nosniff",
           "Referrer-Policy": "same-origin", "X-Frame-Options": "DENY",
           "Cache-Control": "no-store"}


@dataclass(frozen=True)
class PageContext:
    sessions: Sessions
    limiter: RateLimiter
    identity: Callable[..., Identity]
    manager: Callable[[Identity], JobManager]


@cache
def _template(name: str) -> str:
    return (TEMPLATES / name).read_text(encoding="utf-8")


def render(name: str, *, title: str, session: Session | None, **values: str) -> str:
    """A page: the layout around templates/<name>, each {{key}} replaced (in one pass)
    by its value, HTML-escaped."""
    who = _template("user.html") if session is not None else ""
    page = _template("layout.html").replace("{{who}}", who).replace(
        "{{body}}", _template(name))
    fields = {"title": title, "csrf": session.csrf if session else "",
              "user": session.identity.name if session else "",
              "role": session.identity.role.value if session else "", **values}
    return _FIELD.sub(lambda m: html.escape(fields.get(m.group(1), "")), page)


def secure_request(request: Request) -> bool:
    """Did the request come over TLS (here, or to the Ingress in front)?"""
    return (request.url.scheme == "https"
            or request.headers.get("x-forwarded-proto", "").lower() == "https")


def install(app: FastAPI, ctx: PageContext) -> None:
    sessions = ctx.sessions
    Who = Annotated[Identity, Depends(ctx.identity)]

    def page(request: Request, name: str, title: str, status: int = 200,
             **values: str) -> Response:
        session = sessions.read(request.cookies.get(COOKIE))
        if session is None and name != "signin.html":
            return RedirectResponse("/signin", status_code=303, headers=HEADERS)
        return HTMLResponse(render(name, title=title, session=session, **values),
                            status_code=status, headers=HEADERS)

    app.mount("/static", StaticFiles(directory=STATIC), name="static")

    @app.get("/", include_in_schema=False)
    def campaigns_page(request: Request) -> Response:
        return page(request, "campaigns.html", "Campaigns")

    @app.get("/campaigns/{group}", include_in_schema=False)
    def campaign_page(request: Request, group: str) -> Response:
        return page(request, "campaign.html", f"Campaign {group[:200]}", group=group[:200])

    @app.get("/jobs/{job_id}", include_in_schema=False)
    def job_page(request: Request, job_id: str) -> Response:
        return page(request, "job.html", f"Job {job_id[:100]}", job_id=job_id[:100])

    @app.get("/signin", include_in_schema=False)
    def signin_form(request: Request) -> Response:
        if sessions.read(request.cookies.get(COOKIE)) is not None:
            return RedirectResponse("/", status_code=303, headers=HEADERS)
        return page(request, "signin.html", "Sign in", message="")

    @app.post("/signin", include_in_schema=False)
    async def signin(request: Request) -> Response:
        client = request.client.host if request.client else "?"
        try:
            ctx.limiter.take(f"signin from {client}")
        except RateLimited:
            return page(request, "signin.html", "Sign in", 429,
                        message="Too many attempts: wait a few seconds and try again.")
        origin = request.headers.get("origin")
        if origin is not None and not same_origin(origin, request.headers.get("host")):
            return page(request, "signin.html", "Sign in", 403,
                        message="A sign-in from another site is refused.")
        body = await _form(request)
        token = (body.get("token") or "").strip()
        made = sessions.sign_in(token) if token else None
        if made is None:
            log.info("A sign-in to the page from %s was refused (unknown or revoked token)",
                     client)
            return page(request, "signin.html", "Sign in", 401,
                        message="Unknown or revoked token.")
        session, value = made
        log.info("%s signed in to the page from %s", session.identity, client)
        response = RedirectResponse("/", status_code=303, headers=HEADERS)
        response.set_cookie(COOKIE, value, max_age=SESSION_SECONDS, path="/", httponly=True,
                            samesite="strict", secure=secure_request(request))
        return response

    @app.post("/signout", include_in_schema=False)
    async def signout(request: Request) -> Response:
        session = sessions.read(request.cookies.get(COOKIE))
        body = await _form(request)
        if session is not None:
            sessions.check_write(session, "POST", body.get("csrf"),
                                 request.headers.get("origin"), request.headers.get("host"))
            sessions.sign_out(session)
            log.info("%s signed out of the page", session.identity)
        response = RedirectResponse("/signin", status_code=303, headers=HEADERS)
        response.delete_cookie(COOKIE, path="/", httponly=True, samesite="strict",
                               secure=secure_request(request))
        return response

    # ------------------------------------------------------- the page's data
    ui = "/ui/api"

    @app.get(f"{ui}/campaigns", include_in_schema=False)
    def campaigns(who: Who) -> Response:
        return _json(ctx.manager(who).campaigns())

    @app.get(f"{ui}/groups/{{group}}/live", include_in_schema=False)
    def live(who: Who, group: str) -> Response:
        return _json(ctx.manager(who).group_live(group))

    @app.get(f"{ui}/groups/{{group}}/summary", include_in_schema=False)
    def summary(who: Who, group: str) -> Response:
        return Response(ctx.manager(who).group_summary_json(group),
                        media_type="application/json", headers={"Cache-Control": "no-store"})

    @app.get(f"{ui}/groups/{{group}}/rows", include_in_schema=False)
    def rows(who: Who, group: str,
             offset: Annotated[int, Query(ge=0, le=10_000_000)] = 0,
             limit: Annotated[int, Query(ge=1, le=500)] = 50,
             sort: Annotated[str, Query(max_length=20)] = "created",
             desc: bool = False, status: Status | None = None,
             q: Annotated[str, Query(max_length=200)] = "") -> Response:
        return _json(ctx.manager(who).table_page(group, offset=offset, limit=limit,
                                                 sort=sort, descending=desc,
                                                 status=status, text=q))

    @app.get(f"{ui}/jobs/{{job_id}}", include_in_schema=False)
    def job(who: Who, job_id: str) -> JobPage:
        return ctx.manager(who).job_page(job_id)


def _json(data: Any) -> Response:
    return JSONResponse(data, headers={"Cache-Control": "no-store"})


async def _form(request: Request) -> dict[str, str]:
    """A small urlencoded form (the sign-in's token, a CSRF field): the first value of
    each field; anything larger than MAX_FORM is read as empty."""
    data = b""
    async for chunk in request.stream():
        data += chunk
        if len(data) > MAX_FORM:
            return {}
    fields = parse_qs(data.decode("utf-8", "replace"), max_num_fields=10)
    return {k: v[0] for k, v in fields.items() if v}
