"""The node's HTTP API: TAXII 2.1 for people and tools, and the peer API for partner nodes.

An ASGI app (Starlette) that only translates HTTP: the TAXII service
(:mod:`gsomia.service.taxii`) decides what a caller sees and audits it; the peer inbox
(:class:`gsomia.service.taxii_ports.PeerInbox`) takes what partners deliver. Errors map to
statuses here and nowhere else:

    MalformedInput → 400 (query, cursor, header) or 422 (a body of the wrong shape); its
                     ``where`` names the field (``rel_to``), never a command-line flag
    NotFound       → 404, one body for "absent" and "you may not see it"
    PolicyDenied, ProofInvalid → 403 (peer API); Replayed → 409; LimitReached → 429
                     with Retry-After ("not now": the sender retries), whose details name
                     the ``limit`` and its ``bound``
    AuditUnavailable, PeerUnavailable, Unavailable → 503 (TAXII: also a batch whose
                     bindings could not be signed); any other GsomiaError → 422 (peer API)
                     (:func:`gsomia.shell.statuses.status_of`, which the dashboard and the
                     desk answer by too)
    no or bad credentials → 401 with WWW-Authenticate; wrong media type → 406 / 415
    a body over the route's bound → 413, before it is read (:mod:`gsomia.shell.body_limit`)
    JSON nested deeper than :data:`gsomia.core.limits.MAX_DEPTH` allows → 422

Handlers validate what they read, so a malformed request never reaches a 500.

People authenticate with ``Authorization: Bearer TOKEN`` or HTTP basic (user name, token as
password). Partner nodes authenticate with their TLS client certificate on ``/peer/v1/``:
``ApiConfig.peer_identity`` names the party whose pinned CA issued it
(:class:`gsomia.shell.peer_identity.PinnedPeers`), or refuses it (403, audited as
``peer-refused``); each route then answers that party only as its agreements with this node
allow (:data:`PEER_STANDING`), and refuses it otherwise exactly as a stranger.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import re
import uuid
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import orjson
from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.requests import ClientDisconnect, Request
from starlette.responses import Response
from starlette.routing import Route

from gsomia.core import crypto, limits
from gsomia.core.agreements import Catalogue
from gsomia.core.audit import TreeHead
from gsomia.core.errors import (
    AuditUnavailable,
    GsomiaError,
    LimitReached,
    MalformedInput,
    NotFound,
    PeerUnavailable,
    PolicyDenied,
    ProofInvalid,
    Replayed,
    Unavailable,
)
from gsomia.core.policy import Person
from gsomia.core.taxii import (
    STIX_MEDIA,
    TAXII_MEDIA,
    api_root,
    content_type_of,
    discovery,
    envelope_bytes,
    error_body,
    manifest_record,
    negotiate,
    taxii_time,
    versions_body,
)
from gsomia.core.types import Party
from gsomia.service import standing
from gsomia.service.taxii import Served, TaxiiService
from gsomia.service.taxii_ports import PeerInbox, StoredVersion
from gsomia.shell import sensor_intake, warnings_out, web
from gsomia.shell.body_limit import BodyLimit, Limit
from gsomia.shell.guard import Defences, retry_seconds, source_of
from gsomia.shell.peer_identity import (
    NO_PARTNERS_CA,
    PeerRefused,
    current_partner,
    former_partner,
)
from gsomia.shell.statuses import RETRY_AFTER_S, status_of

__all__ = ["API_ROOT", "IN_FLIGHT", "MAX_CONTENT_LENGTH", "ApiConfig", "body_limit",
           "create_app", "openapi"]

API_ROOT = "gsomia"
MAX_CONTENT_LENGTH = limits.TAXII_BODY  # what the API root advertises, and what POST takes
_MAX_ID = 300
_CHALLENGE = 'Bearer realm="gsomia", Basic realm="gsomia"'
_NOT_FOUND = error_body("Not found", 404,
                        "There is no such resource, or you are not allowed to see it.")


@dataclass(frozen=True, slots=True)
class ApiConfig:
    """What the app serves and with what: wired by ``serve`` (or a test)."""

    service: TaxiiService
    party: Party
    inbox: PeerInbox
    # The agreements the node knows: which partner the peer API answers on which route, and
    # when (:data:`PEER_STANDING`).
    catalogue: Catalogue
    title: str = ""
    clock: Callable[[], datetime] = lambda: datetime.now(UTC)
    new_id: Callable[[], str] = lambda: str(uuid.uuid4())
    # The partner a request comes from: a party, a refusal (PeerRefused) or None without a
    # client certificate. Nobody, unless wired (bootstrap.app_for_node pins partners' CAs).
    peer_identity: Callable[[Mapping[str, Any]], Party | PeerRefused | None] = \
        lambda scope: None
    # The node's sensor intake (gsomia.shell.sensor_intake.SensorIntake); None: no route.
    sensors: Any = None


# The ASGI extension (``scope["extensions"]``) through which the server hands a request the
# requests it has under way, itself included (a sized collection, kept up to date): ``node
# serve`` sets it.
IN_FLIGHT = "gsomia.in_flight"

# Which pinned party each peer route answers, by its agreements with this node (GSOMIA
# Art. 21: information already provided stays protected after termination; nothing new is
# provided). Any other party's certificate is answered exactly as a stranger's (403, the
# same body) and audited as ``peer-refused`` under its party, with why.
#   "current": an agreement in force now carries items between the two, one way or the
#     other. New items (envelopes): an agreement that ends ends them at once.
#   "former": such an agreement has come into force by now, in force still or ended. What
#     is owed about items exchanged under it: receipts for what was delivered, loss and
#     compromise reports (Art. 17), the originator's classification changes (re-marking),
#     and the tree heads both logs' custody of them is proved by. A party that never had one
#     has none due (its tree head would tell it the size of this node's log).
#   "pinned": any pinned partner. Consents (requests, replies, standing grants and their
#     revocations) are an originator's word on its own items, wherever this node got them:
#     across a hub too, with no agreement between the two (TISA: JPN and KOR through the
#     USA), and after its agreement ended (Art. 21: no release without the originator's
#     consent still holds). None moves an item by itself: a release still needs an agreement
#     in force with its recipient and the policy's yes. Each handler checks the caller may
#     speak of the item (originated here, held from it, a request of this node's, signed).
PEER_STANDING = {
    "/peer/v1/envelopes/": "current",
    "/peer/v1/receipts/": "former",
    "/peer/v1/incidents/": "former",
    "/peer/v1/classification-notices/": "former",
    "/peer/v1/tree-heads/": "former",
    "/peer/v1/tree-heads/held/": "former",
    "/peer/v1/consents/requests/": "pinned",
    "/peer/v1/consents/replies/": "pinned",
    "/peer/v1/consents/standing/": "pinned",
    "/peer/v1/consents/standing/revocations/": "pinned",
}
_NO_AGREEMENT = {"current": "no agreement with this node is in force",
                 "former": "no agreement with this node has been in force"}


def _alone(request: Request) -> bool:
    """No other request is under way: none waits to share this one's audit commit. The
    server takes in together the requests that arrived together (one task each before any
    runs), so readers that come at once are never alone. False when the server does not
    say."""
    under_way = request.scope.get("extensions", {}).get(IN_FLIGHT)
    return under_way is not None and len(under_way) <= 1


class _Refusal(Exception):
    """A response decided early (auth, negotiation); carries the response to send."""

    def __init__(self, response: Response) -> None:
        self.response = response


def _json(body: Mapping[str, Any] | list[Any], status: int = 200, media: str = TAXII_MEDIA,
          headers: Mapping[str, str] | None = None) -> Response:
    return Response(orjson.dumps(body), status_code=status, media_type=media,
                    headers=dict(headers or {}))


def _error(status: int, title: str, description: str = "",
           headers: Mapping[str, str] | None = None) -> Response:
    return _json(error_body(title, status, description), status, headers=headers)


def _malformed(exc: MalformedInput, status: int = 400) -> Response:
    return _json(error_body("Malformed request", status, str(exc),
                            {"where": exc.where, "expected": exc.expected}
                            if exc.where or exc.expected else None), status)


# ---- the app --------------------------------------------------------------------------------

_TAXII_POST = re.compile(r"/[^/]+/collections/[^/]+/objects/")


def body_limit(method: str, path: str) -> Limit:
    """Each route's bound on its request body (see :mod:`gsomia.core.limits`)."""
    if path.startswith("/peer/v1/"):
        return Limit(limits.PEER_BODY)
    if method == "POST" and _TAXII_POST.fullmatch(path):
        return Limit(MAX_CONTENT_LENGTH, TAXII_MEDIA)
    if method == "POST" and path == sensor_intake.PATH:
        return Limit(sensor_intake.SENSOR_BODY)
    # The dashboard's forms (/login: a name and a token) and routes that take no body.
    return Limit(limits.FORM_BODY)



def create_app(config: ApiConfig) -> Starlette:
    """The ASGI app of one node."""
    service = config.service
    root = f"/{API_ROOT}/"
    coll = service.collection_id
    defences = Defences.for_service(service)

    def person_of(request: Request) -> Person:
        header = request.headers.get("authorization", "")
        scheme, _, value = header.partition(" ")
        person: Person | None = None
        value = value.strip()
        account: str | None = None
        token = ""
        if scheme.lower() == "bearer" and value:
            token = value
        elif scheme.lower() == "basic" and value:
            try:
                decoded = base64.b64decode(value, validate=True).decode("utf-8")
            except (binascii.Error, UnicodeDecodeError):
                decoded = ""
            name, colon, secret = decoded.partition(":")
            account, token = (name[:100], secret) if colon else ("", "")
        source = source_of(request)
        if header:
            wait = defences.throttle.retry_after(source, account)
            if wait > 0:
                defences.audit.record(source, account, "taxii", throttled=True)
                raise _Refusal(_error(
                    429, "Too many failed attempts",
                    "Too many failed authentications from this address or for this account; "
                    "try again later.", {"Retry-After": str(retry_seconds(wait))}))
            if token:
                person = service.authenticate(token, account)
            if person is None:
                defences.throttle.failed(source, account)
                defences.audit.record(source, account, "taxii")
        if person is None:
            raise _Refusal(_error(401, "Unauthorized",
                                  "Send a node user's token as a bearer token, or as the "
                                  "password of HTTP basic authentication with the user name.",
                                  {"WWW-Authenticate": _CHALLENGE}))
        return person

    def accept(request: Request, offered: tuple[str, ...] = (TAXII_MEDIA,)) -> str:
        chosen = negotiate(request.headers.get("accept"), offered)
        if chosen is None:
            raise _Refusal(_error(406, "Not acceptable",
                                  "This endpoint answers with " + " or ".join(offered)))
        return chosen

    def params(request: Request) -> dict[str, list[str]]:
        out: dict[str, list[str]] = {}
        for name, value in request.query_params.multi_items():
            out.setdefault(name, []).append(value)
        return out

    def guarded(handler: Callable[[Request], Awaitable[Response]]
                ) -> Callable[[Request], Awaitable[Response]]:
        async def endpoint(request: Request) -> Response:
            try:
                return await handler(request)
            except _Refusal as refusal:
                return refusal.response
            except NotFound:
                return _json(_NOT_FOUND, 404)
            except MalformedInput as exc:
                return _malformed(exc)
            except AuditUnavailable as exc:
                return _error(503, "Audit log unavailable",
                              f"Nothing is served while reads cannot be audited: {exc}")
            except Unavailable as exc:  # e.g. the bindings could not be signed: try again
                return _error(503, "Unavailable", str(exc))
        endpoint.__name__ = handler.__name__
        return endpoint

    def check_root(request: Request) -> None:
        if request.path_params.get("api_root") != API_ROOT:
            raise NotFound("no such API root")

    def check_collection(request: Request) -> str:
        """The collection the path names (the service decides whether the caller sees it)."""
        check_root(request)
        return str(request.path_params.get("collection_id", ""))[:_MAX_ID]

    def object_id(request: Request) -> str:
        oid = str(request.path_params.get("object_id", ""))
        if not oid or len(oid) > _MAX_ID:
            raise NotFound("no such object")
        return oid

    def paging_headers(served: Served) -> dict[str, str]:
        out = {}
        if served.first_added is not None and served.last_added is not None:
            out["X-TAXII-Date-Added-First"] = taxii_time(served.first_added)
            out["X-TAXII-Date-Added-Last"] = taxii_time(served.last_added)
        return out

    # ---- TAXII endpoints -------------------------------------------------------------------
    async def get_discovery(request: Request) -> Response:
        person = person_of(request)
        accept(request)
        body = discovery(config.title or f"gsomia node {config.party}",
                         f"TAXII 2.1 server of the {config.party} gsomia node",
                         root, [root])
        # Which label each collection the caller may see applies (TAXII 2.1 lets a resource
        # carry custom properties): a tool learns where to post plain STIX.
        body["x_gsomia_collections"] = [
            {"id": c.id, "title": c.title,
             "marking": service.collection_doc(person, c).get("x_gsomia_label")}
            for c in service.collections_for(person)]
        return _json(body)

    async def get_api_root(request: Request) -> Response:
        person_of(request)
        accept(request)
        check_root(request)
        return _json(api_root(f"{config.party} holdings",
                              "Items this node holds, as the reader's clearance and "
                              "need-to-know allow", MAX_CONTENT_LENGTH))

    async def get_collections(request: Request) -> Response:
        person = person_of(request)
        accept(request)
        check_root(request)
        return _json({"collections": [service.collection_doc(person, c)
                                      for c in service.collections_for(person)]})

    async def get_collection(request: Request) -> Response:
        person = person_of(request)
        accept(request)
        chosen = service.collection_for(person, check_collection(request))
        return _json(service.collection_doc(person, chosen))

    def objects_response(served: Served, media: str) -> Response:
        contents = [r.content for r in served.rows if r.content is not None]
        if media == STIX_MEDIA:
            body = b'{"type":"bundle","id":"bundle--' + config.new_id().encode() + b'"' + (
                b',"objects":[' + b",".join(contents) + b"]}" if contents else b"}")
        else:
            body = envelope_bytes(contents, served.more, served.next)
        return Response(body, media_type=media, headers=paging_headers(served))

    async def read(request: Request, person: Person, endpoint: str,
                   object_id: str | None = None) -> Served:
        """One page, its read on record (synced) before it is returned. The page is found
        on the event loop; the audit commit is waited for off it, so that other requests
        meanwhile reach theirs and share its disk sync (the store's group commit). With no
        other request under way, none would share it: it is made on the loop, which spares
        a GET the hop to a worker thread and back (a tenth of its CPU)."""
        now = config.clock()
        served = service.read(person, check_collection(request), endpoint, params(request),
                              now, object_id=object_id, audited=False)
        if served.rows:
            given = [(r.id, r.version) for r in served.rows]
            if not service.record_read_now(person, endpoint, given, now,
                                           alone=_alone(request)):
                await run_in_threadpool(service.record_read, person, endpoint, given, now)
        return served

    async def get_objects(request: Request) -> Response:
        person = person_of(request)
        media = accept(request, (TAXII_MEDIA, STIX_MEDIA))
        served = await read(request, person, "objects")
        return objects_response(served, media)

    async def post_objects(request: Request) -> Response:
        person = person_of(request)
        accept(request)
        coll_id = check_collection(request)
        media = content_type_of(request.headers.get("content-type"))
        if media is None:
            return _error(415, "Unsupported media type",
                          f"Send a TAXII envelope as {TAXII_MEDIA} "
                          f"(or a STIX bundle as {STIX_MEDIA})")
        raw = await request.body()  # at most MAX_CONTENT_LENGTH: BodyLimit saw to it
        try:
            body = orjson.loads(raw)
        except orjson.JSONDecodeError as exc:
            return _error(400, "Malformed request", f"the body is not JSON: {exc}")
        try:
            # Each object's depth is bounded by the service before anything walks it (the
            # envelope's other members are never walked; orjson bounds the parse itself).
            result = service.add(person, coll_id, body, media, config.clock(),
                                 config.new_id())
        except MalformedInput as exc:
            return _malformed(exc, 422)
        return _json(result, 202)

    async def get_object(request: Request) -> Response:
        person = person_of(request)
        media = accept(request, (TAXII_MEDIA, STIX_MEDIA))
        served = await read(request, person, "object", object_id(request))
        return objects_response(served, media)

    async def get_manifest(request: Request) -> Response:
        person = person_of(request)
        accept(request)
        served = await read(request, person, "manifest")
        body: dict[str, Any] = {"more": served.more}
        if served.next:
            body["next"] = served.next
        if served.rows:
            body["objects"] = [manifest_record(r.id, r.date_added, _version(r))
                               for r in served.rows]
        return _json(body, headers=paging_headers(served))

    async def get_versions(request: Request) -> Response:
        person = person_of(request)
        accept(request)
        served = await read(request, person, "versions", object_id(request))
        return _json(versions_body([_version(r) for r in served.rows], served.more,
                                   served.next), headers=paging_headers(served))

    async def get_status(request: Request) -> Response:
        person = person_of(request)
        accept(request)
        check_root(request)
        return _json(dict(service.status(person, str(request.path_params["status_id"]))))

    # ---- peer API ----------------------------------------------------------------------------
    async def peer_of(request: Request, standing: str) -> Party:
        """The partner whose pinned CA issued the client certificate, if the route answers
        it (``standing``, :data:`PEER_STANDING`); a 401 without one, a 403 (audited) for one
        that counts as no partner, or as none on this route now."""
        party = config.peer_identity(request.scope)
        if isinstance(party, str) and standing != "pinned":
            now = config.clock()
            agreed = current_partner if standing == "current" else former_partner
            if agreed(party, config.party, config.catalogue, now) is None:
                party = PeerRefused(NO_PARTNERS_CA, party, (), _certificate_sha256(request),
                                    note=_NO_AGREEMENT[standing])
        if isinstance(party, PeerRefused):
            record = getattr(config.inbox, "peer_refused", None)
            if record is not None:
                # Audited before the answer: an unaudited refusal would hide who tried. Its
                # commit off the loop: a stranger's certificates must not stall the node.
                await run_in_threadpool(record, party, f"{request.method} {request.url.path}",
                                        config.clock())
            raise _Refusal(_json(error_body("Refused", 403, party.reason,
                                            {"reasons": [party.reason]}), 403))
        if not party:
            raise _Refusal(_error(401, "Unauthorized",
                                  "The peer API needs a partner node's TLS client "
                                  "certificate (mutual TLS)",
                                  {"WWW-Authenticate": 'Mutual-TLS realm="gsomia-peer"'}))
        return party

    async def peer_body(request: Request) -> bytes:
        if content_type_of_json(request.headers.get("content-type")) is False:
            raise _Refusal(_error(415, "Unsupported media type", "Send application/json"))
        return await request.body()  # at most limits.PEER_BODY: BodyLimit saw to it

    def peer_json(raw: bytes) -> object:
        try:
            body = orjson.loads(raw)
        except orjson.JSONDecodeError as exc:
            raise _Refusal(_error(400, "Malformed request", f"the body is not JSON: {exc}")) \
                from None
        limits.check_depth(body, where="body", limit=limits.MAX_DEPTH + 2)
        return body

    # ``body``: the request's JSON as parsed, of no shape yet: each handler checks it.
    def peer(path: str, handler: Callable[[Request, Party, object], object], *,
             with_body: bool = True) -> Callable[[Request], Awaitable[Response]]:
        standing = PEER_STANDING[path]  # a new route says whom it answers, or none starts

        def answer(request: Request, sender: Party, raw: bytes | None) -> object:
            return handler(request, sender, peer_json(raw) if raw is not None else None)

        async def endpoint(request: Request) -> Response:
            try:
                sender = await peer_of(request, standing)
                raw = await peer_body(request) if with_body else None
                # Parsed, checked and committed on a worker thread: a batch's crypto and its
                # disk sync would otherwise hold every other request (sensor POSTs, TAXII)
                # behind it, and one delivery's sync (GIL released) could not overlap the
                # next one's crypto.
                result = await run_in_threadpool(answer, request, sender, raw)
            except _Refusal as refusal:
                return refusal.response
            except MalformedInput as exc:
                return _malformed(exc, 422)
            except LimitReached as exc:
                # "Not now": a 403 would be final to the sender's outbox, and the notice lost.
                return _json(error_body("Too many requests", 429, str(exc),
                                        {"reasons": list(exc.reasons), "limit": exc.limit,
                                         "bound": exc.bound}), 429,
                             headers={"Retry-After": str(RETRY_AFTER_S)})
            except PolicyDenied as exc:
                return _json(error_body("Refused", 403, str(exc),
                                        {"reasons": list(exc.reasons)}), 403)
            except ProofInvalid as exc:
                return _json(error_body("Does not verify", 403, str(exc)), 403)
            except Unavailable as exc:  # PeerUnavailable, or a log that cannot be synced
                return _error(503, "Not available", str(exc))
            except NotFound:
                return _json(_NOT_FOUND, 404)
            except GsomiaError as exc:
                return _error(status_of(exc), "Refused", str(exc))
            status = 200 if request.method == "GET" else 202
            return Response(orjson.dumps(result), status_code=status,
                            media_type="application/json")
        endpoint.__name__ = handler.__name__
        return endpoint

    def deliver(request: Request, sender: Party, body: object) -> object:
        data = _object(body, "envelope")
        batch = data.get("envelopes")
        many = getattr(config.inbox, "deliver_many", None)
        if batch is not None and many is not None:
            # A batch: one commit at the recipient, one result (receipt or refusal) each.
            if not isinstance(batch, list) or not 0 < len(batch) <= 1000:
                raise MalformedInput("envelopes must be a list of 1 to 1000 envelopes",
                                     where="envelopes")
            envelopes = [crypto.Envelope.from_json(_object(e, "envelope")) for e in batch]
            return {"results": [r.to_json()
                                for r in many(envelopes, sender, config.clock())]}
        envelope = crypto.Envelope.from_json(data)
        _same(envelope.sender, sender, "envelope.sender")
        try:
            return config.inbox.deliver(envelope, sender, config.clock()).to_json()
        except Replayed as exc:
            raise _Refusal(_json(error_body("Replayed", 409, str(exc)), 409)) from None

    def receipt(request: Request, sender: Party, body: object) -> object:
        doc = crypto.Receipt.from_json(_object(body, "receipt"))
        _same(doc.recipient, sender, "receipt.recipient")
        config.inbox.receipt(doc, sender, config.clock())
        return {"accepted": True}

    def consent_request(request: Request, sender: Party, body: object) -> object:
        data = _object(body, "consent request")
        item_id, recipient = data.get("item_id"), data.get("recipient")
        if not isinstance(item_id, str) or not item_id or not isinstance(recipient, str):
            raise MalformedInput("needs item_id and recipient", where="consent request",
                                 expected='{"item_id": "...", "recipient": "USA", '
                                          '"purpose": "...", "reason": "..."}')
        return config.inbox.consent_request(item_id, sender,
                                            service.vocabulary.party(recipient,
                                                                     where="recipient"),
                                            str(data.get("reason", "")), config.clock(),
                                            data.get("request"))

    def consent_reply(request: Request, sender: Party, body: object) -> object:
        data = _object(body, "consent reply")
        if data.get("granted") is False:
            item_id = data.get("item_id")
            if not isinstance(item_id, str) or not item_id:
                raise MalformedInput("needs item_id", where="consent reply")
            config.inbox.consent_refused(item_id, sender, str(data.get("reason", "")),
                                         config.clock())
            return {"accepted": True}
        consent = crypto.Consent.from_json(_object(data.get("consent"), "consent"))
        _same(consent.originator, sender, "consent.originator")
        config.inbox.consent_granted(consent, sender, config.clock())
        return {"accepted": True}

    def standing_consent(request: Request, sender: Party, body: object) -> object:
        take = getattr(config.inbox, "standing_consent", None)
        if take is None:
            raise PeerUnavailable("this node takes no standing consents")
        consent = crypto.StandingConsent.from_json(_object(body, "standing consent"))
        _same(consent.originator, sender, "standing consent.originator")
        return {"accepted": True, "new": take(consent, sender, config.clock())}

    def standing_revocation(request: Request, sender: Party, body: object) -> object:
        take = getattr(config.inbox, "standing_revocation", None)
        if take is None:
            raise PeerUnavailable("this node takes no standing consents")
        # Any partner may pass the originator's revocation on (a relay tells the nodes
        # beyond it): it withdraws, never grants, and its signature is the originator's.
        # A hub passes the signed consent it revokes along with it, as ``consent``.
        revocation, consent = standing.read_revocation(_object(body, "standing revocation"))
        return {"accepted": True, "new": take(revocation, sender, config.clock(),
                                              consent=consent)}

    def incident(request: Request, sender: Party, body: object) -> object:
        data = _object(body, "incident report")
        kind, item_id, description = data.get("kind"), data.get("item_id"), \
            data.get("description")
        if not all(isinstance(v, str) and v for v in (kind, item_id, description)):
            raise MalformedInput("needs kind, item_id and description", where="incident",
                                 expected="loss, compromise, possible-compromise or "
                                          "investigation-result; the item; what happened")
        config.inbox.incident(str(kind), str(item_id), str(description), sender,
                              config.clock())
        return {"accepted": True}

    def tree_head_get(request: Request, sender: Party, body: object) -> object:
        return config.inbox.tree_head().to_json()

    def tree_head_post(request: Request, sender: Party, body: object) -> object:
        head = TreeHead.from_json(_object(body, "tree head"))
        since = request.query_params.get("since")
        with_proof = getattr(config.inbox, "tree_head_exchange", None)
        if since is not None and with_proof is not None:
            # Our head plus a consistency proof from the size the partner recorded.
            return with_proof(head, sender, since, config.clock())
        return config.inbox.partner_tree_head(head, sender, config.clock())

    def tree_head_held(request: Request, sender: Party, body: object) -> object:
        held = getattr(config.inbox, "held_head", None)
        if held is None:
            raise PeerUnavailable("this node keeps no partners' heads")
        return held(sender)

    def classification_notice(request: Request, sender: Party, body: object) -> object:
        apply = getattr(config.inbox, "classification_notice", None)
        if apply is None:
            raise PeerUnavailable("this node takes no classification notices")
        return apply(_object(body, "classification notice"), sender, config.clock())

    async def get_openapi(request: Request) -> Response:
        return Response(orjson.dumps(openapi(coll)), media_type="application/json")

    g = guarded
    routes = [
        *web.routes(config, defences),  # the dashboard: /, /login, /logout, /dashboard/...
        *warnings_out.routes(config, person_of, guarded),  # CAP and GeoJSON for polling
        *(sensor_intake.routes(config.sensors, person_of, guarded, config.clock)
          if config.sensors is not None else []),
        Route("/taxii2/", g(get_discovery), methods=["GET"]),
        Route("/{api_root}/", g(get_api_root), methods=["GET"]),
        Route("/{api_root}/collections/", g(get_collections), methods=["GET"]),
        Route("/{api_root}/collections/{collection_id}/", g(get_collection), methods=["GET"]),
        Route("/{api_root}/collections/{collection_id}/objects/", g(get_objects),
              methods=["GET"]),
        Route("/{api_root}/collections/{collection_id}/objects/", g(post_objects),
              methods=["POST"]),
        Route("/{api_root}/collections/{collection_id}/objects/{object_id}/", g(get_object),
              methods=["GET"]),
        Route("/{api_root}/collections/{collection_id}/objects/{object_id}/versions/",
              g(get_versions), methods=["GET"]),
        Route("/{api_root}/collections/{collection_id}/manifest/", g(get_manifest),
              methods=["GET"]),
        Route("/{api_root}/status/{status_id}/", g(get_status), methods=["GET"]),
        *(Route(path, peer(path, handler, with_body=method == "POST"), methods=[method])
          for method, path, handler in (
              ("POST", "/peer/v1/envelopes/", deliver),
              ("POST", "/peer/v1/receipts/", receipt),
              ("POST", "/peer/v1/consents/requests/", consent_request),
              ("POST", "/peer/v1/consents/replies/", consent_reply),
              ("POST", "/peer/v1/consents/standing/", standing_consent),
              ("POST", "/peer/v1/consents/standing/revocations/", standing_revocation),
              ("POST", "/peer/v1/incidents/", incident),
              ("POST", "/peer/v1/classification-notices/", classification_notice),
              ("GET", "/peer/v1/tree-heads/", tree_head_get),
              ("POST", "/peer/v1/tree-heads/", tree_head_post),
              ("GET", "/peer/v1/tree-heads/held/", tree_head_held))),
        Route("/openapi.json", get_openapi, methods=["GET"]),
    ]

    async def http_error(request: Request, exc: Exception) -> Response:
        code = exc.status_code if isinstance(exc, HTTPException) else 500
        if code == 404:
            return _json(_NOT_FOUND, 404)
        headers = dict(exc.headers or {}) if isinstance(exc, HTTPException) else {}
        return _error(code, str(getattr(exc, "detail", "")) or "Error", "", headers)

    async def client_left(request: Request, exc: Exception) -> Response:
        # The client left, or the server cut a body that did not arrive in time (``node
        # serve``'s body time, answered 408 there): nothing of it was taken and nobody is
        # left to answer; not an error of the app's (uvicorn would log it as one).
        return Response(status_code=408)

    app = Starlette(routes=routes, exception_handlers={HTTPException: http_error,
                                                       ClientDisconnect: client_left},
                    middleware=[Middleware(BodyLimit, limit_of=body_limit)])
    app.state.defences = defences  # ``serve`` closes it: the last counts reach the log
    return app


def content_type_of_json(header: str | None) -> bool | None:
    """True for application/json, False for another type, None when absent."""
    if header is None:
        return None
    return header.split(";")[0].strip().lower() == "application/json"


def _version(row: StoredVersion) -> str:
    """The object's own version text; date_added for objects without one (TAXII §3.4.3)."""
    return row.version if row.version != "unversioned" else taxii_time(row.version_at)


def _object(body: object, what: str) -> Mapping[str, Any]:
    if not isinstance(body, Mapping):
        raise MalformedInput(f"the {what} is not a JSON object", where="body")
    return body


def _certificate_sha256(request: Request) -> str:
    """The SHA-256 of the client certificate the TLS layer received ("" without one)."""
    tls = request.scope.get("extensions", {}).get("tls")
    der = tls.get("client_cert_der") if isinstance(tls, dict) else None
    return hashlib.sha256(der).hexdigest() if isinstance(der, bytes) else ""


def _same(claimed: str, actual: Party, where: str) -> None:
    if claimed != actual:
        raise PolicyDenied((f"{where} is {claimed}, but the TLS client certificate is "
                            f"{actual}'s",))


# ---- OpenAPI ----------------------------------------------------------------------------------


def openapi(collection_id: str) -> dict[str, Any]:
    """An OpenAPI 3.0 description of the node's API (what schemathesis fuzzes)."""
    taxii = {TAXII_MEDIA: {"schema": {"type": "object"}}}
    err = {"description": "TAXII error message",
           "content": {TAXII_MEDIA: {"schema": {"$ref": "#/components/schemas/Error"}}}}
    paging = [
        {"name": "added_after", "in": "query", "schema": {"type": "string"}},
        {"name": "limit", "in": "query", "schema": {"type": "integer", "minimum": 1}},
        {"name": "next", "in": "query", "schema": {"type": "string"}},
        {"name": "match[spec_version]", "in": "query", "schema": {"type": "string"}},
    ]
    matches = [{"name": "match[id]", "in": "query", "schema": {"type": "string"}},
               {"name": "match[type]", "in": "query", "schema": {"type": "string"}}]
    version = [{"name": "match[version]", "in": "query", "schema": {"type": "string"}}]

    def path_param(name: str, fixed: str | None = None) -> dict[str, Any]:
        schema: dict[str, Any] = {"type": "string", "minLength": 1}
        if fixed is not None:
            schema = {"type": "string", "enum": [fixed]}
        return {"name": name, "in": "path", "required": True, "schema": schema}

    root = path_param("api_root", API_ROOT)
    coll = path_param("collection_id", collection_id)
    oid = path_param("object_id")

    def get(summary: str, parameters: list[dict[str, Any]], media: dict[str, Any] | None = None,
            extra: dict[str, Any] | None = None) -> dict[str, Any]:
        responses: dict[str, Any] = {
            "200": {"description": "OK", "content": media or taxii},
            "400": err, "401": err, "404": err, "406": err, "429": err}
        responses.update(extra or {})
        return {"get": {"summary": summary, "parameters": parameters, "responses": responses}}

    objects_media = {TAXII_MEDIA: {"schema": {"type": "object"}},
                     STIX_MEDIA: {"schema": {"type": "object"}}}
    objects_path = get("Objects", [root, coll, *paging, *matches, *version], objects_media)
    objects_path["post"] = {
        "summary": "Add objects",
        "parameters": [root, coll],
        "requestBody": {"required": True, "content": {
            TAXII_MEDIA: {"schema": {"$ref": "#/components/schemas/Envelope"}}}},
        "responses": {"202": {"description": "Status", "content": taxii}, "400": err,
                      "401": err, "404": err, "406": err, "413": err, "415": err, "422": err,
                      "429": err},
    }
    peer_post = {"post": {"summary": "Peer delivery (mutual TLS)",
                          "requestBody": {"required": True, "content": {
                              "application/json": {"schema": {"type": "object"}}}},
                          "responses": {"202": {"description": "accepted"},
                                        "401": {"description": "no client certificate"},
                                        "403": {"description": "refused"},
                                        "413": {"description": "body over the bound"},
                                        "422": {"description": "malformed"}}}}
    return {
        "openapi": "3.0.3",
        "info": {"title": "gsomia node API", "version": "2.1",
                 "description": "TAXII 2.1 for people (bearer or basic), peer API for nodes"},
        "components": {
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"},
                                "basic": {"type": "http", "scheme": "basic"}},
            "schemas": {
                "Error": {"type": "object", "required": ["title", "http_status"],
                          "properties": {"title": {"type": "string"},
                                         "description": {"type": "string"},
                                         "http_status": {"type": "string"}}},
                "Envelope": {"type": "object", "required": ["objects"], "properties": {
                    "objects": {"type": "array", "items": {
                        "type": "object", "required": ["type", "id", "spec_version"],
                        "properties": {"type": {"type": "string"}, "id": {"type": "string"},
                                       "spec_version": {"type": "string"}}}}}},
            },
        },
        "security": [{"bearer": []}, {"basic": []}],
        "paths": {
            "/taxii2/": get("Discovery", []),
            "/{api_root}/": get("API root", [root]),
            "/{api_root}/collections/": get("Collections", [root]),
            "/{api_root}/collections/{collection_id}/": get("Collection", [root, coll]),
            "/{api_root}/collections/{collection_id}/objects/": objects_path,
            "/{api_root}/collections/{collection_id}/objects/{object_id}/":
                get("Object", [root, coll, oid, *paging, *version], objects_media),
            "/{api_root}/collections/{collection_id}/objects/{object_id}/versions/":
                get("Versions", [root, coll, oid, *paging]),
            "/{api_root}/collections/{collection_id}/manifest/":
                get("Manifest", [root, coll, *paging, *matches, *version]),
            "/{api_root}/status/{status_id}/": get("Status", [root, path_param("status_id")]),
            "/peer/v1/envelopes/": peer_post,
            "/peer/v1/receipts/": peer_post,
            "/peer/v1/consents/requests/": peer_post,
            "/peer/v1/consents/replies/": peer_post,
            "/peer/v1/consents/standing/": peer_post,
            "/peer/v1/consents/standing/revocations/": peer_post,
            "/peer/v1/incidents/": peer_post,
            "/peer/v1/classification-notices/": peer_post,
            "/peer/v1/tree-heads/held/": {"get": {
                "summary": "The newest head of the calling node this node holds, as the "
                           "caller signed it (mutual TLS): the caller's roll-back check",
                "responses": {"200": {"description": '{"partner": P, "head": head or null}'},
                              "401": {"description": "no client certificate"}}}},
            **warnings_out.openapi_paths(),
        },
    }
