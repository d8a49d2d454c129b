"""The node dashboard at ``/``: a common operational picture for the node's users.

Login with a node user's name and token gives a session cookie (HttpOnly, SameSite=Strict,
signed with a per-process key; the session itself, with the token, stays in this process).
The page is static (served from ``gsomia/data/web``, no CDN) and draws what
``/dashboard/state`` returns; ``/dashboard/events`` (server-sent events) pushes a new state
whenever the node's holdings, custody, receipts or audit log change.

What a user sees obeys Art. 7: an item's content is sent only when the user's clearance and
need-to-know permit it (:mod:`gsomia.service.access`), and each item version a session is first
shown is read through ``handlers.read_item``, so the read is in the audit log. Items the user
may not read are not mentioned at all, not even counted: a count would tell a reader how many
items they may not see, and when one arrives.

``POST /dashboard/replay`` plays a real launch's measurements from this node's own radars and
its pre-launch indicators into the node (:mod:`gsomia.shell.sensor_player`, through the
node's sensor intake), as the flight unfolds and ``speed`` times faster: the node's warning
centre tracks, predicts and warns from what it holds, and the page shows what it publishes
(a node served without its centre, ``node serve``, starts one for the replay).
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import secrets
import threading
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from importlib.resources import files
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qs

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import (
    HTMLResponse,
    JSONResponse,
    RedirectResponse,
    Response,
    StreamingResponse,
)
from starlette.routing import Route

from gsomia.core.errors import GsomiaError, MalformedInput, Unavailable
from gsomia.core.roles import Action
from gsomia.core.types import Party, utc_text
from gsomia.service import access
from gsomia.shell.guard import Defences, retry_seconds, source_of
from gsomia.shell.statuses import status_of
from gsomia.shell.store import StoreError

if TYPE_CHECKING:
    from collections.abc import AsyncIterator

    from gsomia.core.agreements import Catalogue
    from gsomia.core.custody import Holding
    from gsomia.core.labels import Scheme
    from gsomia.core.policy import Person
    from gsomia.core.tracking.sensors import Sensor
    from gsomia.service.ports import KeyStore, ShellReads
    from gsomia.shell.api import ApiConfig
    from gsomia.shell.store import Store

__all__ = ["COOKIE", "CSRF_HEADER", "LOGIN_COOKIE", "IntakeSink", "NodeView", "Sessions",
           "origin_problem", "partner_heads", "readable_holdings", "routes",
           "sensor_coverage", "state"]

COOKIE = "gsomia_session"
LOGIN_COOKIE = "gsomia_login"  # the sign-in form's CSRF nonce
CSRF_HEADER = "x-csrf-token"
SESSION_TTL = timedelta(hours=8)
_ASSETS = {"dashboard.js": "text/javascript; charset=utf-8",
           "dashboard.css": "text/css; charset=utf-8"}
_CSP = ("default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
        "connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'")


def _asset(name: str) -> str:
    return files("gsomia").joinpath("data", "web", name).read_text(encoding="utf-8")


@dataclass(slots=True)
class Session:
    name: str
    token: str
    expires: datetime
    shown: set[tuple[str, str]] = field(default_factory=set)
    # The synchronizer token: the page sends it back with each state-changing request,
    # which another origin cannot read, so cannot forge.
    csrf: str = field(default_factory=lambda: secrets.token_urlsafe(32))


class Sessions:
    """Sessions of this process; the cookie carries the id and its HMAC under a random key."""

    def __init__(self, clock: Callable[[], datetime] = lambda: datetime.now(UTC)) -> None:
        self._key = secrets.token_bytes(32)
        self._by_id: dict[str, Session] = {}
        self._lock = threading.Lock()
        self._clock = clock

    def _mac(self, sid: str) -> str:
        return hmac.new(self._key, sid.encode(), hashlib.sha256).hexdigest()

    def open(self, name: str, token: str) -> str:
        sid = secrets.token_urlsafe(24)
        with self._lock:
            self._by_id[sid] = Session(name, token, self._clock() + SESSION_TTL)
        return f"{sid}.{self._mac(sid)}"

    def get(self, cookie: str | None) -> Session | None:
        if not cookie:
            return None
        sid, _, mac = cookie.partition(".")
        if not hmac.compare_digest(mac.encode(), self._mac(sid).encode()):
            return None
        with self._lock:
            found = self._by_id.get(sid)
            if found is not None and found.expires <= self._clock():
                del self._by_id[sid]
                return None
            return found

    def close(self, cookie: str | None) -> None:
        sid = (cookie or "").partition(".")[0]
        with self._lock:
            self._by_id.pop(sid, None)

    def close_all(self, name: str) -> None:
        """End every session of ``name`` (their token was revoked)."""
        with self._lock:
            for sid in [k for k, v in self._by_id.items() if v.name == name]:
                del self._by_id[sid]

    def login_token(self, nonce: str) -> str:
        """The sign-in form's CSRF token for the nonce in its cookie (signed double submit:
        a cookie planted from a sibling origin has no matching token)."""
        return hmac.new(self._key, b"login:" + nonce.encode(), hashlib.sha256).hexdigest()


def origin_problem(request: Request) -> str | None:
    """Why a state-changing request may come from another origin (None: it is this one's).

    The browser says where a request comes from: ``Sec-Fetch-Site`` (where sent) must be
    same-origin (or none: typed by the user), and ``Origin`` (or, failing it, ``Referer``)
    must be this server's own origin; a request that says neither is refused.
    """
    site = request.headers.get("sec-fetch-site")
    if site is not None and site not in ("same-origin", "none"):
        return f"the request was sent from another site ({site})"
    own = f"{request.url.scheme}://{request.url.netloc}"
    origin = request.headers.get("origin")
    if origin is None:
        referer = request.headers.get("referer")
        if referer is None:
            return "the request names no origin (Origin or Referer)"
        scheme, _, rest = referer.partition("://")
        origin = f"{scheme}://{rest.partition('/')[0]}"
    if origin != own:
        return f"the request comes from {origin}, not from {own}"
    return None


# ---- the node's view -----------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class NodeView:
    """What the dashboard reads and writes, taken from the app that ``serve`` wired."""

    store: Store
    keys: KeyStore
    catalogue: Catalogue
    party: Party
    folder: Path | None = None  # the node's folder: its partners.json (partner_heads)


def _node_of(request: Request, party: Party) -> NodeView | None:
    ts = getattr(request.app.state, "taxii_store", None)
    if ts is None:
        return None
    return NodeView(ts.store, ts.keys, ts.catalogue, party,
                    getattr(request.app.state, "node_folder", None))


def fingerprint(node: NodeView) -> tuple[int, ...]:
    """Changes whenever something the page shows changes."""
    with node.store.repository() as repo:
        return repo.holdings_mark()


def partner_heads(node: NodeView) -> list[dict[str, Any]]:
    """The latest tree head each partner sent (verified when it arrived, then logged), as
    ``gsomia audit partners`` shows it (:func:`gsomia.shell.notices.partner_heads`):
    ``consistent`` is False once any of its heads failed a check, True if checked and never
    failed, None if never checked from this side; ``received_at``: when it was logged."""
    from gsomia.shell.notices import partner_heads as heads

    return [{**h, "received_at": h["at"]} for h in heads(node)
            if isinstance(h["head"], dict)]


def sensor_coverage(party: Party, person: Person, catalogue: Catalogue,
                    sensors: Sequence[Sensor]) -> dict[str, Any]:
    """The sensors this node knows of that the user may see, as coverage areas, and how
    many more it knows of are withheld (:func:`gsomia.service.access.sensors_shown`).
    Partners' sensor reports travel under pseudonyms (``gsomia demo``) and reveal no site,
    so they add none.
    """
    from gsomia.core.tracking.coverage import coverage_area
    from gsomia.shell.report import COLOURS

    known, withheld = access.sensors_shown(party, person, catalogue.schemes, sensors)
    shown: list[dict[str, Any]] = []
    for s in known:
        own = s.owner == party
        shown.append({**coverage_area(s).to_json(), "relation": "own" if own else "partner",
                      "known_by": "own sensor" if own else f"released by {s.owner}",
                      "marking": s.label.national_marking(),
                      "colour": COLOURS.get(s.owner, "#555555")})
    shown.sort(key=lambda a: (a["relation"] != "own", a["owner"], a["id"]))
    return {"areas": shown, "withheld": withheld}


def _stamp(at: datetime | None) -> str | None:
    return None if at is None else utc_text(at)


def _payload(obj: Mapping[str, Any]) -> tuple[str | None, Any, str | None]:
    """What the map draws from an item: (kind, data, problem). An item stored before its
    extension properties were checked on ingest may not fit their schema: it is listed
    with the problem and drawn nowhere, and the other items are drawn as usual."""
    from gsomia.core.stix import extension_property_problem

    for kind in ("warning", "ipp", "track"):
        name = f"x_gsomia_{kind}"
        value = obj.get(name)
        if value is not None:
            problem = extension_property_problem(name, value)
            return (kind, None, problem) if problem else (kind, value, None)
    return None, None, None


def readable_holdings(repo: ShellReads, person: Person,
                      schemes: Mapping[Party, Scheme]) -> list[Holding]:
    """The holdings ``person`` may read, in the order stored, found without touching those
    they may not: a read of every holding, each asked of the policy, made the dashboard's
    answer take longer the more the node held above them, so that a low-cleared user could
    time it to count them and see when one came (dashsql29). The store seeks the versions
    whose current label's audience, purpose and level fit the person
    (:func:`gsomia.service.access.reading_keys`); the policy then decides on each one's
    custody label, so a fault in that narrowing can only hide a version, never show one."""
    keys = repo.readable_versions(*access.reading_keys(person, schemes))
    return [h for h in repo.holdings_of(keys)
            if h.custody and access.may_read(person, h.current.national_label, schemes)]


def state(node: NodeView, session: Session, now: datetime,
          sensors: Sequence[Sensor] | None = None) -> dict[str, Any]:
    """The page's data for one user: only what Art. 7 lets them read, reads audited.

    ``sensors``: the sensor catalogue (default: the shipped one).
    """
    from gsomia.core.agreements import status
    from gsomia.service import handlers
    from gsomia.shell import feeds

    schemes = node.catalogue.schemes
    with node.store.repository() as repo:
        user = repo.user_named(session.name)
        if user is None:
            raise MalformedInput("the session's user is no longer registered",
                                 where="session")
        person = user.person()
        readable = readable_holdings(repo, person, schemes)
        # Receipts looked up for what the person may read only: a query per item held
        # made the answer's time count the items they may not (finalreview28a).
        receipts = {h.item.item_id: [r.to_json() for r in repo.receipts_for(h.item.item_id)]
                    for h in readable}
    items = []
    for h in readable:
        current = h.current
        key = (h.item.item_id, h.item.version)
        if key not in session.shown:
            handlers.read_item(node.store.uow(), schemes=schemes, token=session.token,
                               item_id=h.item.item_id, version=h.item.version, now=now)
            session.shown.add(key)
        obj = json.loads(h.item.content)
        kind, data, problem = _payload(obj)
        items.append({
            "id": h.item.item_id, "version": h.item.version, "type": h.item.stix_type,
            "originator": h.item.originator, "added_at": _stamp(h.item.added_at),
            "marking": current.national_label.national_marking(),
            "original_marking": current.original_label.national_marking(),
            "summary": obj.get("abstract") or obj.get("name") or obj.get("description") or "",
            "kind": kind, "data": data, "problem": problem,
            "custody": [{"event": c.event, "holder": c.holder, "provider": c.provider,
                         "agreement": c.agreement, "at": _stamp(c.at),
                         "marking": c.national_label.national_marking()} for c in h.custody],
            "receipts": receipts.get(h.item.item_id, []),
        })
    agreements = []
    for a in sorted(node.catalogue.agreements.values(), key=lambda a: a.id):
        st = status(a, now).to_json()
        agreements.append({"id": a.id, "title": a.title, "parties": sorted(a.parties),
                           "member": node.party in a.parties, **st,
                           "history": [{"on": ev.on.isoformat(), "kind": ev.kind, "by": ev.by,
                                        "note": ev.note} for ev in a.history]})
    from gsomia.shell.notices import head_for_partners

    audit: dict[str, Any] = {"size": None, "head": None, "partners": [], "error": None,
                             "published": None, "shown": False}
    # The log's size and heads grow with every item, readable or not: shown to a person not
    # cleared for all the node may hold, they would count and time what that person may not
    # read (review28). Nothing of them then, the same document whatever the node holds.
    if access.may_see_log(person, node.party, schemes, node.catalogue.vocabulary.purposes):
        audit["shown"] = True
        try:
            with node.store.reader() as reader:
                audit["size"] = reader.size()
                # Synced first: a head shown now must not be one a power cut takes back; one
                # that cannot be synced refuses the whole state (503, not a crash).
                head = head_for_partners(reader)
                audit["head"] = None if head is None else head.to_json()
                external = reader.external_head()
                audit["published"] = None if external is None else external.to_json()
            audit["partners"] = partner_heads(node)
        except Unavailable:
            raise
        except (GsomiaError, StoreError, ValueError) as exc:
            audit["error"] = str(exc)
    coverage: dict[str, Any] = {"areas": [], "withheld": 0, "error": None}
    try:
        catalogue_sensors = feeds.load_sensors() if sensors is None else sensors
        coverage.update(sensor_coverage(node.party, person, node.catalogue,
                                        catalogue_sensors))
    except GsomiaError as exc:
        coverage["error"] = str(exc)
    return {"party": node.party, "now": _stamp(now),
            "user": {"name": user.name, "clearance": user.clearance,
                     "need_to_know": sorted(user.need_to_know)},
            "items": items, "agreements": agreements, "audit": audit,
            "coverage": coverage}


# ---- replay --------------------------------------------------------------------------------
class IntakeSink:
    """Where the dashboard's replay sends its lines: the node's own sensor intake (the one
    ``POST /sensors/v1/measurements`` feeds), in the name of the user who started it."""

    def __init__(self, intake: Any, actor: str, on_sent: Callable[[int], None]) -> None:
        self.intake = intake
        self.actor = actor
        self.on_sent = on_sent
        self.sent = 0

    def send(self, docs: list[dict[str, Any]]) -> None:
        import orjson

        self.intake.take([orjson.dumps(d) for d in docs], datetime.now(UTC), self.actor)
        self.sent += len(docs)
        self.on_sent(self.sent)


# ---- pages ---------------------------------------------------------------------------------
def _page(title: str, body: str, status: int = 200) -> HTMLResponse:
    return HTMLResponse(
        f'<!doctype html><html lang="en"><head><meta charset="utf-8"><title>{title}</title>'
        '<meta name="viewport" content="width=device-width,initial-scale=1">'
        '<link rel="stylesheet" href="/dashboard/static/dashboard.css"></head>'
        f"<body>{body}</body></html>", status_code=status,
        headers={"Content-Security-Policy": _CSP, "Cache-Control": "no-store",
                 "X-Content-Type-Options": "nosniff"})


def _login_page(party: Party, csrf: str, error: str = "", status: int = 200) -> HTMLResponse:
    import html

    shown = f'<p class="error" role="alert">{html.escape(error)}</p>' if error else ""
    return _page(f"gsomia {party} node: sign in", (
        f'<main class="login"><h1>gsomia {party} node</h1>{shown}'
        '<form method="post" action="/login">'
        f'<input type="hidden" name="csrf" value="{html.escape(csrf)}">'
        '<label>User name <input name="name" '
        'autocomplete="username" required></label><label>Token <input name="token" '
        'type="password" autocomplete="current-password" required></label>'
        '<button type="submit">Sign in</button></form><p class="muted">Use the token '
        "printed by <code>gsomia user add</code>.</p></main>"), status)


def _dashboard_page(party: Party, csrf: str) -> HTMLResponse:
    import html

    from gsomia.shell.report import Projection, base_map

    # Korea, Japan and the Pacific east of Hokkaido, where IRBM tests have come down.
    proj = Projection(lon_min=122.0, lon_max=162.0, lat_min=30.0, lat_max=47.0)
    svg = (f'<svg id="map" viewBox="0 0 {proj.width:.1f} {proj.height:.1f}" role="img" '
           f'aria-label="map" data-projection=\'{json.dumps(proj.to_json())}\'>'
           f'{base_map(proj)}<g id="coverage"></g><g id="overlay"></g></svg>')
    return _page(f"gsomia {party} node", (
        f'<header><h1>gsomia <span id="party">{party}</span> node</h1>'
        '<span id="who"></span><span id="live" class="live">connecting…</span>'
        '<a href="/desk" id="desk-link">Operator desk</a>'
        '<form method="post" action="/logout" id="logout">'
        f'<input type="hidden" name="csrf" value="{html.escape(csrf)}">'
        '<button type="submit">Sign out</button></form>'
        '</header><p id="error" class="error" role="alert" hidden></p><main>'
        f'<section class="map"><h2>Map</h2>{svg}<div id="coverage-legend" '
        'aria-label="sensor coverage legend"><label class="toggle"><input type="checkbox" '
        'id="show-coverage" checked> Sensor coverage</label><span id="coverage-key"></span>'
        '<p id="coverage-note" class="muted"></p></div><form id="replay"><label>Launch '
        '<input name="launch" value="2017-08-29" size="10"></label>'
        '<label>Speed <input name="speed" value="20" size="3"></label>'
        '<button type="submit">Replay launch</button> <span id="replay-status"></span></form>'
        '</section><section><h2>Warnings</h2><ul id="warnings"></ul></section>'
        '<section class="wide"><h2>Items held</h2>'
        '<table id="items"><thead><tr><th>item</th><th>marking here</th><th>summary</th>'
        '<th>custody</th><th>receipts</th></tr></thead><tbody></tbody></table></section>'
        '<section><h2>Agreements</h2><div id="agreements"></div></section>'
        '<section><h2>Audit</h2><div id="audit"></div></section></main>'
        '<script src="/dashboard/static/dashboard.js"></script>'))


def routes(config: ApiConfig, defences: Defences) -> list[Route]:
    """The dashboard's routes for the app of one node (``api.create_app``).

    Every state-changing route (``POST /login``, ``/logout``, ``/dashboard/replay``) refuses
    a request from another origin (:func:`origin_problem`) or without the CSRF token of the
    session (of the sign-in form, for ``/login``); ``/dashboard/replay`` takes JSON only.
    Failed sign-ins are throttled and audited with the TAXII API's failures (``defences``).
    A session lasts only while its user's token does: a revoked token ends it at the next
    request, and the event stream within half a second. The operator desk
    (:mod:`gsomia.shell.desk`, ``/desk``) shares the sessions and the forgery check.
    """
    party: Party = config.party
    authenticate = config.service.authenticate
    sessions = Sessions()
    replays: dict[str, threading.Thread] = {}
    progress: dict[str, Any] = {"running": False, "published": 0, "total": 0, "error": None}

    def may_replay(session: Session, node: NodeView) -> bool:
        """Only an operator who may read what the replay publishes may start one: the
        centre's outputs and the reports of every sensor it plays. A replay feeds the node's
        sensor intake, and its centre issues real warnings that partners receive, so it
        needs the role the intake's own route needs (a reader with the clearance had been
        able to start one)."""
        person = authenticate(session.token, session.name)
        if person is None:
            return False
        with node.store.repository() as repo:
            user = repo.user_named(person.name)
        if user is None or not access.may_act(str(user.role), Action.PUBLISH):
            return False
        schemes = config.service.schemes
        reports = [] if config.sensors is None else list(config.sensors.labels.values())
        return access.may_replay(person, party, schemes) and all(
            access.may_read(person, label, schemes) for label in reports)

    def current(session: Session | None) -> Session | None:
        """The session, if its user's token still holds (not revoked since sign-in)."""
        if session is None:
            return None
        if authenticate(session.token, session.name) is None:
            sessions.close_all(session.name)
            return None
        return session

    async def session_of(request: Request) -> Session | None:
        found = sessions.get(request.cookies.get(COOKIE))
        return None if found is None else await run_in_threadpool(current, found)

    def forged(request: Request, expected: str | None, sent: str | None) -> str | None:
        """Why a state-changing request is refused as possibly forged (None: it is not)."""
        problem = origin_problem(request)
        if problem is not None:
            return problem
        if not expected or not sent or not hmac.compare_digest(expected.encode(),
                                                               sent.encode()):
            return "the request does not carry this page's CSRF token: reload the page"
        return None

    def login_form_response(nonce: str | None, error: str = "", status: int = 200
                            ) -> Response:
        fresh = nonce or secrets.token_urlsafe(24)
        response = _login_page(party, sessions.login_token(fresh), error, status)
        if nonce is None:
            response.set_cookie(LOGIN_COOKIE, fresh, httponly=True, samesite="strict",
                                secure=True, path="/login")
        return response

    async def index(request: Request) -> Response:
        session = await session_of(request)
        if session is None:
            return RedirectResponse("/login", status_code=303)
        return _dashboard_page(party, session.csrf)

    async def login_form(request: Request) -> Response:
        return login_form_response(request.cookies.get(LOGIN_COOKIE) or None)

    async def login(request: Request) -> Response:
        body = (await request.body())[:4096].decode("utf-8", "replace")
        form = parse_qs(body)
        nonce = request.cookies.get(LOGIN_COOKIE) or None
        problem = forged(request, sessions.login_token(nonce) if nonce else None,
                         (form.get("csrf") or [""])[0])
        if problem is not None:
            return login_form_response(nonce, f"Sign-in refused: {problem}.", 403)
        name = (form.get("name") or [""])[0].strip()[:100]
        token = (form.get("token") or [""])[0].strip()
        source = source_of(request)
        wait = defences.throttle.retry_after(source, name or None)
        if wait > 0:
            defences.audit.record(source, name or None, "dashboard", throttled=True)
            response = login_form_response(
                nonce, "Too many failed sign-ins from this address or for this user: "
                       f"try again in {retry_seconds(wait)} s.", 429)
            response.headers["Retry-After"] = str(retry_seconds(wait))
            return response
        person = await run_in_threadpool(authenticate, token, name) if name and token \
            else None
        if person is None:
            defences.throttle.failed(source, name or None)
            defences.audit.record(source, name or None, "dashboard")
            return login_form_response(nonce, "Unknown user name or token.", 401)
        response = RedirectResponse("/", status_code=303)
        response.set_cookie(COOKIE, sessions.open(name, token), httponly=True,
                            samesite="strict", secure=request.url.scheme == "https",
                            max_age=int(SESSION_TTL.total_seconds()), path="/")
        response.delete_cookie(LOGIN_COOKIE, path="/login")
        return response

    async def logout(request: Request) -> Response:
        cookie = request.cookies.get(COOKIE)
        session = sessions.get(cookie)
        body = (await request.body())[:4096].decode("utf-8", "replace")
        problem = forged(request, session.csrf if session else None,
                         (parse_qs(body).get("csrf") or [""])[0])
        if session is not None and problem is not None:
            return JSONResponse({"error": f"sign-out refused: {problem}"}, 403)
        sessions.close(cookie)
        response = RedirectResponse("/login", status_code=303)
        response.delete_cookie(COOKIE, path="/")
        return response

    async def asset(request: Request) -> Response:
        name = request.path_params["name"]
        media = _ASSETS.get(name)
        if media is None:
            return Response("not found", 404, media_type="text/plain")
        return Response(_asset(name), media_type=media,
                        headers={"Cache-Control": "no-cache", "X-Content-Type-Options":
                                 "nosniff"})

    def unauthorised() -> Response:
        return JSONResponse({"error": "sign in first"}, 401)

    def unavailable() -> Response:
        return JSONResponse({"error": "this node's store is not available to the dashboard"},
                            503)

    async def signed_in(request: Request) -> tuple[Session, NodeView] | Response:
        """The caller's session and this node's store, or the response that refuses them."""
        session = await session_of(request)
        if session is None:
            return unauthorised()
        node = _node_of(request, party)
        if node is None:
            return unavailable()
        return session, node

    async def get_state(request: Request) -> Response:
        found = await signed_in(request)
        if isinstance(found, Response):
            return found
        session, node = found
        try:
            doc = await run_in_threadpool(state, node, session, datetime.now(UTC))
        except GsomiaError as exc:
            return JSONResponse({"error": str(exc)}, status_of(exc))
        return JSONResponse(doc, headers={"Cache-Control": "no-store"})

    async def session_of_cookie(cookie: str | None) -> Session | None:
        found = sessions.get(cookie)
        return None if found is None else await run_in_threadpool(current, found)

    async def events(request: Request) -> Response:
        found = await signed_in(request)
        if isinstance(found, Response):
            return found
        session, node = found
        cookie = request.cookies.get(COOKIE)

        async def stream() -> AsyncIterator[str]:
            seen: tuple[int, ...] | None = None
            sent: str | None = None
            quiet = 0
            while not await request.is_disconnected():
                if await session_of_cookie(cookie) is None:
                    yield "event: signed-out\ndata: {}\n\n"
                    return
                try:
                    now_print = await run_in_threadpool(fingerprint, node)
                    if now_print != seen:
                        doc = await run_in_threadpool(state, node, session, datetime.now(UTC))
                        # Reads just audited change the log, not what the page shows.
                        seen = await run_in_threadpool(fingerprint, node)
                        # Sent only if what this person sees changed: the node's every commit
                        # moves the fingerprint, and an event at the instant an item they may
                        # not read is stored would tell them it came (review28).
                        shown = json.dumps({k: v for k, v in doc.items() if k != "now"})
                        if shown != sent:
                            sent = shown
                            yield f"event: state\ndata: {json.dumps(doc)}\n\n"
                            quiet = 0
                except (GsomiaError, StoreError) as exc:
                    yield f"event: failure\ndata: {json.dumps({'error': str(exc)})}\n\n"
                quiet += 1
                if quiet >= 15:
                    yield ": keep-alive\n\n"
                    quiet = 0
                await asyncio.sleep(0.5)

        return StreamingResponse(stream(), media_type="text/event-stream",
                                 headers={"Cache-Control": "no-store",
                                          "X-Accel-Buffering": "no"})

    async def replay(request: Request) -> Response:
        found = await signed_in(request)
        if isinstance(found, Response):
            return found
        session, node = found
        problem = forged(request, session.csrf, request.headers.get(CSRF_HEADER))
        if problem is not None:
            return JSONResponse({"error": f"replay refused: {problem}"}, 403)
        if (request.headers.get("content-type") or "").split(";")[0].strip().lower() \
                != "application/json":
            return JSONResponse({"error": "send the replay request as application/json"}, 415)
        if not await run_in_threadpool(may_replay, session, node):
            return JSONResponse({"error": "a replay needs the operator role and read access "
                                          "to what it publishes (clearance and need-to-know "
                                          "for dprk-missile)"}, 403)
        if config.sensors is None:
            return JSONResponse({"error": "this node takes no sensor measurements, so it "
                                          "cannot play a launch's"}, 409)
        try:
            form = json.loads((await request.body())[:4096])
        except ValueError:
            form = None
        if not isinstance(form, dict):
            return JSONResponse({"error": "the body must be a JSON object such as "
                                          '{"launch": "2017-08-29", "speed": 20}'}, 400)
        if "regime" in form:
            return JSONResponse({"error": "a replay plays this node's own sensors; what it "
                                          "shares follows its partners (the federation's "
                                          "topology): send no regime"}, 400)
        day = str(form.get("launch", "2017-08-29")).strip()
        try:
            speed = float(form.get("speed", 20))
            if not 0 < speed <= 1000:
                raise ValueError
        except (TypeError, ValueError):
            return JSONResponse({"error": "speed must be a number above 0, at most 1000"}, 400)
        running = replays.get("current")
        if running is not None and running.is_alive():
            return JSONResponse({"error": "a replay is already running"}, 409)
        from gsomia.shell.sensor_player import playlist

        try:
            indicators, lines = await run_in_threadpool(playlist, day, None, party, 0)
        except MalformedInput as exc:
            return JSONResponse({"error": str(exc)}, 400)
        intake = config.sensors
        progress.update(running=True, published=0, total=len(indicators) + len(lines),
                        error=None)

        def work() -> None:
            from gsomia.shell.sensor_player import play
            from gsomia.shell.warning_centre import ensure_centre

            sink = IntakeSink(intake, session.name,
                              lambda n: progress.update(published=n))
            try:
                ensure_centre(intake.node)
                play(sink, indicators, lines, speed)
            except GsomiaError as exc:
                # What was taken stays; the page says why the rest did not arrive.
                progress["error"] = str(exc)
            finally:
                progress["running"] = False

        thread = threading.Thread(target=work, name="gsomia-replay", daemon=True)
        replays["current"] = thread
        thread.start()
        return JSONResponse({"launch": day, "party": party,
                             "measurements": len(lines), "indicators": len(indicators),
                             "speed": speed}, 202)

    async def replay_status(request: Request) -> Response:
        if await session_of(request) is None:
            return unauthorised()
        return JSONResponse(progress, headers={"Cache-Control": "no-store"})

    from gsomia.shell import desk

    # The operator desk (/desk): the same sessions, the same forgery check.
    desk_routes = desk.routes(config, desk.Gate(session_of, forged, sessions.close_all, _page))

    return [
        Route("/", index, methods=["GET"]),
        Route("/dashboard/replay", replay_status, methods=["GET"]),
        Route("/login", login_form, methods=["GET"]),
        Route("/login", login, methods=["POST"]),
        Route("/logout", logout, methods=["POST"]),
        Route("/dashboard/static/{name}", asset, methods=["GET"]),
        Route("/dashboard/state", get_state, methods=["GET"]),
        Route("/dashboard/events", events, methods=["GET"]),
        Route("/dashboard/replay", replay, methods=["POST"]),
        *desk_routes,
    ]
