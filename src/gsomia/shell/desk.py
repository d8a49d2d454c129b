"""The operator desk at ``/desk``: what the node's operators do on the command line, in the
dashboard, by role (:mod:`gsomia.core.roles`).

An ``operator`` answers consent requests (the third-party rule), grants and revokes standing
consents (``consent standing grant|revoke``), files incident reports and
sees those received, reclassifies what this party originated, and publishes a STIX object
under a label whose release to each partner is previewed with the release policy
(:func:`gsomia.core.policy.decide`); an ``admin`` also adds users (their token shown once)
and revokes them. Every action calls the handler the command line calls
(``consent grant|deny``, ``incident report``, ``item reclassify``, ``publish``,
``user add|revoke``), with the signed-in user as the audit event's actor.

Every POST takes JSON only, from the dashboard's own origin with the session's CSRF token
(the same check as ``/dashboard/replay``). A refusal is audited (``action-refused``) and
answered 403 (a role too low, a forged request) or 404: an item, or a consent request about
an item, that the user may not read (Art. 7) is answered exactly as one that does not exist,
and the desk lists only what the user may read.
"""

from __future__ import annotations

import html
import json
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from importlib.resources import files
from typing import TYPE_CHECKING, Any

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, RedirectResponse, Response
from starlette.routing import Route

from gsomia.core import roles
from gsomia.core.errors import ActionRefused as Refused
from gsomia.core.errors import GsomiaError, MalformedInput, PolicyDenied
from gsomia.core.policy import ReleaseRequest
from gsomia.core.types import Party, utc_text
from gsomia.service import access
from gsomia.shell.statuses import status_of

if TYPE_CHECKING:
    from gsomia.core.custody import Holding, NodeUser
    from gsomia.core.labels import Scheme, SecurityLabel
    from gsomia.core.policy import Person
    from gsomia.service.handlers import LabelRequest
    from gsomia.shell.api import ApiConfig
    from gsomia.shell.node import Node
    from gsomia.shell.store import SqlRepository
    from gsomia.shell.web import Session

__all__ = ["Gate", "desk_state", "preview", "readable_items_here", "routes"]

_ASSETS = {"desk.js": "text/javascript; charset=utf-8", "desk.css": "text/css; charset=utf-8"}
_BODY = 8192  # the dashboard's bound on a form (limits.FORM_BODY): the middleware enforces it


@dataclass(frozen=True, slots=True)
class Gate:
    """What the dashboard lends the desk: its sessions and its forgery check."""

    session_of: Callable[[Request], Awaitable[Session | None]]
    forged: Callable[[Request, str | None, str | None], str | None]
    close_all: Callable[[str], None]
    page: Callable[[str, str], HTMLResponse]


def _now() -> datetime:
    return datetime.now(UTC)


def _stamp(at: Any) -> Any:
    return utc_text(at) if isinstance(at, datetime) else at


# ---- reading ------------------------------------------------------------------------------
def readable_items_here(repo: SqlRepository, person: Person, schemes: Mapping[Party, Scheme]
                        ) -> dict[str, tuple[Holding, SecurityLabel]]:
    """Each item ``person`` may read → (a holding, its label as held here), found without
    touching what they may not: a read of every holding made the desk's answer take longer
    the more the node held above its operator, who could time it to count those items and
    see when one came (desk29). The store seeks the versions whose label fits the person
    (the dashboard's narrowing, :func:`gsomia.shell.web.readable_holdings`); every version
    held of those items is then read, since an item is readable only if all of them are,
    and :func:`gsomia.service.access.readable_items` decides: a fault in the narrowing can
    only hide an item, never show one."""
    ids = {item_id for item_id, _ in
           repo.readable_versions(*access.reading_keys(person, schemes))}
    held = repo.versions_held(sorted(ids)) if ids else set()
    return access.readable_items(person, repo.holdings_of(held), schemes)


def _visible_labels(node: Node, user: NodeUser) -> dict[str, tuple[Holding, SecurityLabel]]:
    """Each item the user may read → (a holding, its label as held here)."""
    with node.store.repository() as repo:
        return readable_items_here(repo, user.person(), node.catalogue.schemes)


def _summary(holding: Holding) -> str:
    obj = json.loads(holding.item.content)
    return str(obj.get("name") or obj.get("abstract") or obj.get("description") or "")[:200]


def picker(node: Node) -> dict[str, Any]:
    """The values a label may hold here, for the publish form's pickers."""
    vocab = node.catalogue.vocabulary
    scheme = node.catalogue.schemes[node.party]
    return {"levels": [lv.name for lv in scheme.levels],
            "parties": sorted(vocab.parties), "purposes": sorted(vocab.purposes),
            "caveats": sorted(vocab.caveats), "categories": sorted(vocab.categories),
            "policies": sorted(a.id for a in node.catalogue.agreements.values()
                               if node.party in a.parties)}


def desk_state(node: Node, user: NodeUser, now: datetime,
               read: Callable[[Holding], None] = lambda holding: None) -> dict[str, Any]:
    """What the desk shows ``user``: each section only if their role permits it, and in it
    only what they may read. ``read`` is called with each holding whose content (its name)
    is shown, so that the read is audited as the dashboard's are."""
    from gsomia.shell import notices
    from gsomia.shell.exchange import consent_rows

    def summary(holding: Holding) -> str:
        read(holding)
        return _summary(holding)

    allowed = {a.value: access.may_act(user.role, a) for a in roles.Action}
    doc: dict[str, Any] = {
        "party": node.party, "now": _stamp(now),
        "user": {"name": user.name, "role": user.role, "clearance": user.clearance,
                 "need_to_know": sorted(user.need_to_know)},
        "allowed": allowed, "roles": list(roles.ROLES)}
    if not (allowed[roles.Action.CONSENT_INBOX] or allowed[roles.Action.USER_LIST]):
        return doc
    visible = _visible_labels(node, user)
    if allowed[roles.Action.CONSENT_INBOX]:
        doc["consents"] = [
            {"id": r["id"], "item_id": r["item_id"], "summary": summary(visible[r["item_id"]][0]),
             "marking": visible[r["item_id"]][1].national_marking(),
             "requester": r["holder"], "recipient": r["recipient"], "reason": r["reason"],
             "direction": r["direction"], "status": r["status"], "at": r["at"],
             "decided_at": r["decided_at"]}
            for r in consent_rows(node, visible) if r["item_id"] in visible]
        from gsomia.shell.consents import standing_list

        vocab = node.catalogue.vocabulary
        doc["standing"] = {"consents": standing_list(node),
                           "parties": sorted(vocab.parties - {node.party}),
                           "categories": sorted(vocab.categories),
                           "purposes": sorted(vocab.purposes)}
    if allowed[roles.Action.INCIDENT_LIST]:
        doc["incidents"] = [r for r in notices.incident_rows(node, visible)
                            if r["item_id"] is None or r["item_id"] in visible]
        doc["items"] = [{"id": i, "summary": summary(h), "marking": lab.national_marking(),
                         "originator": h.item.originator,
                         "reclassifiable": h.item.originator == node.party}
                        for i, (h, lab) in sorted(visible.items())]
    if allowed[roles.Action.PUBLISH]:
        doc["picker"] = picker(node)
    if allowed[roles.Action.USER_LIST]:
        with node.store.repository() as repo:
            revoked = repo.revoked_names()
            doc["users"] = [{**u.public_json(),
                             "state": "revoked" if u.name in revoked else "active"}
                            for u in repo.users()]
    return doc


def _label_request(body: Mapping[str, Any]) -> LabelRequest:
    from gsomia.service import handlers

    label = body.get("label")
    if not isinstance(label, Mapping):
        raise MalformedInput("no label", where="label",
                             expected='{"level", "rel_to": [...], "purpose", "caveats": [...], '
                                      '"category", "policy"}')

    def text(name: str, required: bool = True) -> str | None:
        value = label.get(name)
        if value in (None, "") and not required:
            return None
        if not isinstance(value, str) or not value:
            raise MalformedInput(f"label.{name} is missing", where=f"label.{name}",
                                 expected="a value from the picker")
        return value

    def texts(name: str) -> tuple[str, ...]:
        value = label.get(name) or []
        if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
            raise MalformedInput(f"label.{name} is not a list of codes", where=f"label.{name}")
        return tuple(value)

    return handlers.LabelRequest(str(text("level")), texts("rel_to"), str(text("purpose")),
                                 frozenset(texts("caveats")), text("policy", False),
                                 text("category", False))


def preview(node: Node, user: NodeUser, body: Mapping[str, Any],
            now: datetime) -> dict[str, Any]:
    """Who could receive an item so labelled, by the release policy as in force ``now``:
    per partner, the decision with its agreement, the level it would be marked there and the
    reasons; and whether the publisher could read it (publishing needs that)."""
    from gsomia.service import handlers

    label = handlers.make_label(_label_request(body), originator=node.party,
                                catalogue=node.catalogue, now=now)
    partners = []
    for p in sorted(node.catalogue.vocabulary.parties - {node.party}):
        decision = handlers.check_release(ReleaseRequest("preview", label, node.party, p, now),
                                          node.catalogue)
        partners.append({"partner": p, **decision.to_json()})
    own = access.reading(user.person(), label, node.catalogue.schemes)
    return {"marking": label.national_marking(),
            "english": label.english_marking(node.catalogue.schemes),
            "partners": partners, "you_may_read": own.permit,
            "your_reasons": list(own.reasons)}


# ---- acting ---------------------------------------------------------------------------------
def _need(user: NodeUser, action: roles.Action) -> None:
    allowed = access.acting(user.role, action)
    if not allowed.permit:
        raise Refused(403, f"refused: {allowed.reason}", (allowed.reason,))


def _readable_item(node: Node, user: NodeUser, item_id: object,
                   action: str) -> tuple[Holding, SecurityLabel]:
    """The holding of ``item_id`` if the user may read it; else refused as not held."""
    from gsomia.service import handlers

    if not isinstance(item_id, str) or not item_id:
        raise MalformedInput("no item id", where="item_id", expected="an item id from the list")
    found = _visible_labels(node, user).get(item_id)
    if found is None:
        raise Refused(404, handlers.not_readable(item_id),
                      (f"{action}: {item_id} is not held here or not readable by "
                       f"{user.name}",), item_id)
    return found


def _text(body: Mapping[str, Any], name: str, *, limit: int = 2000,
          required: bool = True) -> str:
    value = body.get(name, "")
    if not isinstance(value, str) or (required and not value.strip()):
        raise MalformedInput(f"{name} is missing", where=name, expected="some text")
    return value.strip()[:limit]


def act(node: Node, user: NodeUser, action: str, body: Mapping[str, Any], now: datetime,
        close_all: Callable[[str], None]) -> dict[str, Any]:
    """Do ``action`` for ``user``, through the command line's own handlers."""
    from gsomia.service import handlers
    from gsomia.shell import notices
    from gsomia.shell.consents import answer_consent, standing_grant, standing_revoke
    from gsomia.shell.node import new_token
    from gsomia.shell.stix_check import check_stix

    if action in ("grant", "deny"):
        _need(user, roles.Action.CONSENT_DECIDE)
        request_id = body.get("request")
        # Sought by its id: reading the whole register made the answer's time count the
        # requests about items the user may not read (desk29).
        with node.store.repository() as repo:
            row = repo.consent_request_row(request_id) \
                if isinstance(request_id, str) and request_id else None
        if row is not None and row["direction"] != "incoming":
            row = None
        visible = _visible_labels(node, user)
        if row is None or row["item_id"] not in visible:
            # Absent, or about an item the user may not read: one answer.
            raise Refused(404, f"no consent request {str(request_id)[:100]!r} that you may "
                               "answer is held here",
                          (f"{action}: request {str(request_id)[:100]!r} absent or about an "
                           f"item {user.name} may not read",),
                          row["item_id"] if row else None)
        return answer_consent(node, row["id"], action == "grant",
                              _text(body, "reason", required=action == "deny"),
                              actor=user.name)
    if action == "standing-grant":
        _need(user, roles.Action.CONSENT_DECIDE)
        categories = body.get("categories")
        if not isinstance(categories, list) or not all(isinstance(c, str) for c in categories):
            raise MalformedInput("categories is not a list of label categories",
                                 where="categories", expected="one or more from the list")
        return standing_grant(node, to=_text(body, "to", limit=3), categories=categories,
                              purpose=_text(body, "purpose", limit=100),
                              until=_text(body, "until", limit=40),
                              since=_text(body, "from", limit=40, required=False) or None,
                              actor=user.name)
    if action == "standing-revoke":
        _need(user, roles.Action.CONSENT_DECIDE)
        return standing_revoke(node, _text(body, "id", limit=200), actor=user.name)
    if action == "incident":
        _need(user, roles.Action.INCIDENT_REPORT)
        item_id = body.get("item_id")
        _readable_item(node, user, item_id, action)
        report, queued = notices.report_incident(
            node, item_id=str(item_id), kind=_text(body, "kind", limit=40),
            description=_text(body, "description"), now=now, actor=user.name)
        return {**report.to_json(), "queued_to": queued}
    if action == "reclassify":
        _need(user, roles.Action.RECLASSIFY)
        item_id = body.get("item_id")
        _readable_item(node, user, item_id, action)
        notice, queued = notices.reclassify(node, item_id=str(item_id),
                                            level=_text(body, "level", limit=40), now=now,
                                            actor=user.name)
        return {"item_id": item_id, "old_level": notice.old_level,
                "new_level": notice.new_level, "queued_to": queued}
    if action == "preview":
        _need(user, roles.Action.PREVIEW_RELEASE)
        return preview(node, user, body, now)
    if action == "publish":
        _need(user, roles.Action.PUBLISH)
        obj = body.get("object")
        if not isinstance(obj, Mapping):
            raise MalformedInput("no STIX object", where="object",
                                 expected="one STIX 2.1 object (JSON)")
        published = handlers.publish(node.uow(), keys=node.keys, catalogue=node.catalogue,
                                     obj=obj, label=_label_request(body), now=now,
                                     actor=user.name, validate=check_stix,
                                     publisher=user.person())
        return published.to_json()
    if action == "add-user":
        _need(user, roles.Action.USER_ADD)
        need = body.get("need_to_know") or []
        if isinstance(need, str):
            need = [p for p in need.split(",")]
        if not isinstance(need, list) or not all(isinstance(p, str) for p in need):
            raise MalformedInput("need_to_know is not a list of purposes", where="need_to_know")
        token = new_token()
        try:
            added = handlers.add_user(
                node.uow(), keys=node.keys, schemes=node.catalogue.schemes,
                name=_text(body, "name", limit=200), clearance=_text(body, "clearance"),
                need_to_know=need, token=token, now=now, actor=user.name,
                purposes=node.catalogue.vocabulary.purposes,
                role=_text(body, "role", limit=20), appointer=user)
        except PolicyDenied as exc:
            raise Refused(403, "refused: " + "; ".join(exc.reasons), exc.reasons) from None
        # Shown once, to the admin who made it; only its hash is stored.
        return {**added.public_json(), "token": token}
    if action == "revoke-user":
        _need(user, roles.Action.USER_REVOKE)
        name = _text(body, "name", limit=200)
        done = handlers.revoke_user(node.uow(), name=name, now=now, actor=user.name)
        close_all(name)
        return {"name": done.name, "state": "revoked", "revoked_at": done.to_json()["at"]}
    raise MalformedInput(f"{action!r} is not an action of the desk", where="path")


# ---- HTTP -----------------------------------------------------------------------------------
def _asset(name: str) -> str:
    return files("gsomia").joinpath("data", "web", name).read_text(encoding="utf-8")


def _page(party: Party, csrf: str, gate: Gate) -> HTMLResponse:
    return gate.page(f"gsomia {party} node: operator desk", (
        '<link rel="stylesheet" href="/desk/static/desk.css">'
        f'<header><h1>gsomia <span id="party">{html.escape(party)}</span> operator desk</h1>'
        '<span id="who"></span><a href="/">Dashboard</a></header>'
        f'<main id="desk" data-csrf="{html.escape(csrf)}">'
        '<p id="error" class="error" role="alert" hidden></p>'
        '<p id="role-note" class="muted" hidden></p>'
        '<section id="consents" hidden><h2>Consent requests</h2>'
        '<p class="muted">Holders asking this party, as originator, to release an item to a '
        'third party.</p><p class="status" role="status"></p>'
        '<table><thead><tr><th>request</th><th>item</th><th>marking</th><th>requester</th>'
        '<th>to</th><th>reason given</th><th>status</th><th>answer</th></tr></thead>'
        '<tbody></tbody></table></section>'
        '<section id="standing" hidden><h2>Standing consents</h2>'
        '<p class="muted">This party\'s consent in advance to relays of its items of some '
        'categories, for one purpose, to one recipient, until a date; sent to the partners, '
        'checked at every hop, revocable.</p><form id="standing-form"><label>To <select '
        'name="to"></select></label><span class="categories">Categories </span><label>'
        'Purpose <select name="purpose"></select></label><label>Until <input name="until" '
        'placeholder="2027-01-01T00:00:00Z" size="22"></label><button type="submit">Grant'
        '</button></form><p class="status" role="status"></p>'
        '<table><thead><tr><th>id</th><th>direction</th><th>from → to</th><th>categories</th>'
        '<th>purpose</th><th>valid</th><th>state</th><th></th></tr></thead><tbody></tbody>'
        '</table></section>'
        '<section id="incidents" hidden><h2>Incident reports</h2>'
        '<form id="incident-form"><label>Item <select name="item_id"></select></label>'
        '<label>Kind <select name="kind"><option>loss</option><option>compromise</option>'
        '<option>possible-compromise</option><option>investigation-result</option>'
        '</select></label><label>Description <input name="description" size="40">'
        '</label><button type="submit">File report</button></form>'
        '<p class="status" role="status"></p>'
        '<table><thead><tr><th>reference</th><th>direction</th><th>kind</th><th>item</th>'
        '<th>by</th><th>description</th><th>sent</th></tr></thead><tbody></tbody></table>'
        '</section>'
        '<section id="reclassify" hidden><h2>Reclassification</h2>'
        '<p class="muted">Only items this party originated; every holder is told and '
        're-marks.</p><p class="status" role="status"></p>'
        '<table><thead><tr><th>item</th><th>summary</th><th>marking</th><th>new level</th>'
        '</tr></thead><tbody></tbody></table></section>'
        '<section id="publish" hidden><h2>Publish</h2><form id="publish-form">'
        '<label>STIX 2.1 object <textarea name="object" rows="8" cols="70"></textarea>'
        '</label><fieldset><legend>Label</legend><label>Level <select name="level">'
        '</select></label><span class="rel-to">REL TO </span><label>Purpose <select '
        'name="purpose"></select></label><span class="caveats">Caveats </span><label>Category'
        ' <select name="category"></select></label><label>Policy <select name="policy">'
        '</select></label></fieldset><div id="preview" aria-live="polite"></div>'
        '<button type="submit">Publish</button></form><p class="status" role="status"></p>'
        '</section>'
        '<section id="users" hidden><h2>Users</h2><form id="user-form"><label>Name <input '
        'name="name"></label><label>Clearance <select name="clearance"></select></label>'
        '<label>Need-to-know <input name="need_to_know" value="dprk-missile"></label>'
        '<label>Role <select name="role"></select></label><button type="submit">Add user'
        '</button></form><p class="status" role="status"></p>'
        '<p id="new-token" hidden>Token for <b class="name"></b>, shown only now: '
        '<code class="token"></code></p>'
        '<table><thead><tr><th>name</th><th>role</th><th>clearance</th><th>need-to-know</th>'
        '<th>state</th><th></th></tr></thead><tbody></tbody></table></section>'
        '</main><script src="/desk/static/desk.js"></script>'))


def routes(config: ApiConfig, gate: Gate) -> list[Route]:
    """The desk's routes; mounted by :func:`gsomia.shell.web.routes`."""
    party: Party = config.party

    def node_of() -> Node | None:
        return getattr(getattr(config, "inbox", None), "node", None)

    def user_of(node: Node, name: str) -> NodeUser | None:
        with node.store.repository() as repo:
            return repo.user_named(name)

    def audit_refusal(node: Node, actor: str, action: str, exc: Refused) -> None:
        from gsomia.service import handlers

        handlers.refuse_action(node.uow(), actor=actor, action=action, reasons=exc.reasons,
                               now=_now(), item_id=exc.item_id)

    async def page(request: Request) -> Response:
        session = await gate.session_of(request)
        if session is None:
            return RedirectResponse("/login", status_code=303)
        return _page(party, session.csrf, gate)

    async def asset(request: Request) -> Response:
        media = _ASSETS.get(request.path_params["name"])
        if media is None:
            return Response("not found", 404, media_type="text/plain")
        return Response(_asset(request.path_params["name"]), media_type=media,
                        headers={"Cache-Control": "no-cache",
                                 "X-Content-Type-Options": "nosniff"})

    async def signed_in(request: Request) -> tuple[Session, Node] | Response:
        """The caller's session and this node, or the response that refuses them."""
        session = await gate.session_of(request)
        if session is None:
            return JSONResponse({"error": "sign in first"}, 401)
        node = node_of()
        if node is None:
            return JSONResponse({"error": "this node's store is not available to the desk"},
                                503)
        return session, node

    async def get_state(request: Request) -> Response:
        found = await signed_in(request)
        if isinstance(found, Response):
            return found
        session, node = found
        user = await run_in_threadpool(user_of, node, session.name)
        if user is None:
            return JSONResponse({"error": "sign in first"}, 401)
        now = _now()

        def read(holding: Holding) -> None:
            """The first time this session is shown an item version, read it through the
            access rule (audited), as the dashboard does (``web.state``)."""
            from gsomia.service import handlers

            key = (holding.item.item_id, holding.item.version)
            if key not in session.shown:
                handlers.read_item(node.store.uow(), schemes=node.catalogue.schemes,
                                   token=session.token, item_id=key[0], version=key[1],
                                   now=now)
                session.shown.add(key)

        try:
            doc = await run_in_threadpool(desk_state, node, user, now, read)
        except GsomiaError as exc:
            return JSONResponse({"error": str(exc)}, status_of(exc))
        return JSONResponse(doc, headers={"Cache-Control": "no-store"})

    async def post(request: Request) -> Response:
        action = request.path_params["action"]
        found = await signed_in(request)
        if isinstance(found, Response):
            return found
        session, node = found
        problem = gate.forged(request, session.csrf, request.headers.get("x-csrf-token"))
        if problem is not None:
            await run_in_threadpool(audit_refusal, node, session.name, action,
                                    Refused(403, problem, (f"possibly forged: {problem}",)))
            return JSONResponse({"error": f"{action} refused: {problem}"}, 403)
        if (request.headers.get("content-type") or "").split(";")[0].strip().lower() \
                != "application/json":
            return JSONResponse({"error": "send the request as application/json"}, 415)
        try:
            body = json.loads((await request.body())[:_BODY])
        except ValueError:
            body = None
        if not isinstance(body, dict):
            return JSONResponse({"error": "the body must be a JSON object"}, 400)

        def run() -> Response:
            user = user_of(node, session.name)
            if user is None:
                return JSONResponse({"error": "sign in first"}, 401)
            try:
                doc = act(node, user, action, body, _now(), gate.close_all)
            except Refused as exc:
                audit_refusal(node, user.name, action, exc)
                return JSONResponse({"error": exc.public}, exc.status)
            except PolicyDenied as exc:
                if action != "reclassify":  # whose handler puts its refusal on record
                    audit_refusal(node, user.name, action,
                                  Refused(403, str(exc), tuple(exc.reasons)))
                return JSONResponse({"error": "refused: " + "; ".join(exc.reasons)}, 403)
            except MalformedInput as exc:
                return JSONResponse({"error": str(exc), "where": exc.where,
                                     "expected": exc.expected}, status_of(exc))
            except GsomiaError as exc:
                return JSONResponse({"error": str(exc)}, status_of(exc))
            return JSONResponse(doc, headers={"Cache-Control": "no-store"})

        return await run_in_threadpool(run)

    return [
        Route("/desk", page, methods=["GET"]),
        Route("/desk/static/{name}", asset, methods=["GET"]),
        Route("/desk/state", get_state, methods=["GET"]),
        Route("/desk/{action}", post, methods=["POST"]),
    ]
