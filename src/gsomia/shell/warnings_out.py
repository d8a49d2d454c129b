"""Warnings out of a node: ``gsomia warnings`` and the routes systems poll over HTTPS.

Both read through the TAXII service (:class:`gsomia.service.taxii.TaxiiService`): a person
gets only the notes the access rule (Art. 7) lets them read, and every read is audited as a
TAXII read is. What they were given is turned into CAP 1.2 alerts and GeoJSON by
:mod:`gsomia.core.alerting`.

Routes (a node user's bearer token or HTTP basic, as TAXII):

- ``GET /warnings/v1/alerts[?limit=N]``: the JSON index of CAP messages, newest first;
- ``GET /warnings/v1/alerts/{identifier}.cap``: one CAP 1.2 alert (``application/cap+xml``);
- ``GET /warnings/v1/geojson``: tracks, impact ellipses and warned regions
  (``application/geo+json``).

A message the caller may not read answers exactly as one that does not exist (TAXII's 404),
and an index without it is the index of a node that never held it. Each answer carries an
``ETag`` (SHA-256 of the body; ``If-None-Match`` with it gives 304) and, when the reader
may read any note, ``Last-Modified`` (when the newest of them arrived).
"""

from __future__ import annotations

import hashlib
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from email.utils import format_datetime
from functools import lru_cache, partial
from typing import Any

import orjson
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from gsomia.core import alerting, stix
from gsomia.core.errors import MalformedInput
from gsomia.core.policy import Person
from gsomia.core.types import Party
from gsomia.service.taxii import NotFound, TaxiiService

__all__ = ["MAX_NOTES", "Warnings", "openapi_paths", "read_warnings", "region_outlines",
           "routes"]

PAGE = 5_000
MAX_NOTES = 100_000    # a bound on one read: pages of PAGE notes
MAX_INDEX = 1_000
_MAX_ID = 300


@dataclass(frozen=True, slots=True)
class Warnings:
    """What one reader may see of the node's warnings."""

    party: Party
    holdings: alerting.Holdings
    messages: tuple[alerting.Message, ...]
    changed: datetime | None = None     # when the newest note the reader may read arrived
    given: tuple[tuple[str, str], ...] = ()   # the notes (id, version) read, to audit

    def find(self, identifier: str) -> alerting.Message:
        for m in self.messages:
            if m.identifier == identifier:
                return m
        raise NotFound(f"no warning {identifier}")

    def index(self, limit: int = MAX_INDEX) -> dict[str, Any]:
        newest = list(reversed(self.messages))[:limit]
        return {"sender": alerting.sender_of(self.party),
                "alerts": [alerting.index_entry(m) for m in newest],
                "more": len(self.messages) > limit}

    def cap(self, identifier: str) -> bytes:
        return alerting.cap_bytes(self.find(identifier), region_outlines())

    def geojson(self) -> dict[str, Any]:
        return alerting.feature_collection(self.messages, self.holdings, region_outlines())


@lru_cache(maxsize=1)
def region_outlines() -> Mapping[str, alerting.Outline]:
    """Coarse outlines of the shipped geography, by region name (read once)."""
    from gsomia.shell import feeds

    return alerting.outlines(feeds.load_geography())


def read_warnings(service: TaxiiService, person: Person, now: datetime, *,
                  audited: bool = True) -> Warnings:
    """The warnings, tracks and impact predictions ``person`` may read; every note read is
    audited by the TAXII service, or, with ``audited=False``, by the caller when it gives
    something made of them (``service.record_read(…, found.given, …)``): a poller's ``304
    Not Modified`` gives nothing, so it adds nothing to the log."""
    schemes = service.schemes
    held: list[alerting.Held] = []
    params: dict[str, list[str]]
    labels = service.store.label_classes()
    markings: dict[str, tuple[alerting.Marking, Party]] = {}
    changed: datetime | None = None
    given: list[tuple[str, str]] = []
    # Warnings in a pass of their own, then tracks and predictions, each pass bounded by
    # MAX_NOTES: nothing else is read (sensor reports, a reader's notes would count against
    # the bound and, past it, push the newest warnings out of the feed unsaid), and a flood
    # of tracks or predictions, which a person may post, pushes out no warning.
    for kinds in stix.FEED_PASSES:
        params = {"match[type]": ["note"], "limit": [str(PAGE)]}
        for _ in range(MAX_NOTES // PAGE):
            served = service.read(person, service.collection_id, "objects", params, now,
                                  audited=audited, kinds=kinds)
            for row in served.rows:
                given.append((row.id, row.version))
                if row.content is None:
                    continue
                found = markings.get(row.label_key)
                if found is None:
                    label = labels.get(row.label_key)
                    if label is None:
                        labels = service.store.label_classes()
                        label = labels[row.label_key]
                    found = markings[row.label_key] = (alerting.Marking(
                        label.national_marking(), label.english_marking(schemes)),
                        label.originator)
                held.append(alerting.Held(row.id, orjson.loads(row.content), *found))
                changed = row.date_added if changed is None else max(changed, row.date_added)
            if not served.more or served.next is None:
                break
            params = {**params, "next": [served.next]}
    holdings = alerting.read_holdings(held)
    return Warnings(service.party, holdings,
                    tuple(alerting.messages(holdings.warnings, service.party)), changed,
                    tuple(given))


def _params(request: Request, allowed: frozenset[str]) -> dict[str, str]:
    out: dict[str, str] = {}
    for name, value in request.query_params.multi_items():
        if name not in allowed:
            raise MalformedInput(f"unknown query parameter {name!r}", where=name,
                                 expected=", ".join(sorted(allowed)) or "no query parameters")
        if name in out:
            raise MalformedInput("given twice", where=name, expected="one value")
        out[name] = value
    return out


def _limit(text: str | None) -> int:
    if text is None:
        return MAX_INDEX
    if not text.isdigit() or not 1 <= int(text) <= MAX_INDEX:
        raise MalformedInput(f"{text[:20]!r} is not a limit", where="limit",
                             expected=f"a whole number from 1 to {MAX_INDEX}")
    return int(text)


async def _answer(request: Request, body: bytes, media: str, found: Warnings,
                  audit: Callable[[], None]) -> Response:
    """The body, or 304 when the poller holds it already; only a body sent is audited (a
    system polling every few seconds would otherwise log every note at every poll)."""
    tag = '"' + hashlib.sha256(body).hexdigest() + '"'
    headers = {"ETag": tag, "Cache-Control": "private, no-cache",
               "X-Content-Type-Options": "nosniff"}
    if found.changed is not None:
        headers["Last-Modified"] = format_datetime(found.changed.astimezone(UTC), usegmt=True)
    sent = request.headers.get("if-none-match", "")
    if tag in {t.strip() for t in sent.split(",")}:
        return Response(status_code=304, headers=headers)
    await run_in_threadpool(audit)   # unaudited means ungiven: AuditUnavailable is a 503
    return Response(body, media_type=media, headers=headers)


def routes(config: Any, person_of: Callable[[Request], Person],
           guarded: Callable[[Callable[[Request], Awaitable[Response]]],
                             Callable[[Request], Awaitable[Response]]]) -> list[Route]:
    """The polling routes of one node's app (``api.create_app``): ``person_of`` authenticates
    as TAXII does (throttled, failures audited), ``guarded`` renders refusals as TAXII does
    (the same 404 for absent and hidden)."""
    service: TaxiiService = config.service

    async def visible(request: Request, person: Person) -> Warnings:
        return await run_in_threadpool(partial(read_warnings, audited=False), service, person,
                                       config.clock())

    def audit(person: Person, via: str, found: Warnings) -> Callable[[], None]:
        return partial(service.record_read, person, via, found.given, config.clock())

    async def alerts(request: Request) -> Response:
        person = person_of(request)     # first: a stranger learns nothing, not even a 400
        limit = _limit(_params(request, frozenset({"limit"})).get("limit"))
        found = await visible(request, person)
        return await _answer(request, orjson.dumps(found.index(limit)), "application/json",
                             found, audit(person, "warnings:alerts", found))

    async def alert(request: Request) -> Response:
        person = person_of(request)
        _params(request, frozenset())
        name = str(request.path_params.get("name", ""))
        found = await visible(request, person)
        # The same work for an absent and a hidden message: both end in find's NotFound.
        if len(name) > _MAX_ID or not name.endswith(".cap"):
            raise NotFound("no such warning")
        body = await run_in_threadpool(found.cap, name.removesuffix(".cap"))
        return await _answer(request, body, alerting.CAP_MEDIA, found,
                             audit(person, "warnings:cap", found))

    async def geojson(request: Request) -> Response:
        person = person_of(request)
        _params(request, frozenset())
        found = await visible(request, person)
        body = await run_in_threadpool(lambda: orjson.dumps(found.geojson()))
        return await _answer(request, body, alerting.GEOJSON_MEDIA, found,
                             audit(person, "warnings:geojson", found))

    g = guarded
    return [Route("/warnings/v1/alerts", g(alerts), methods=["GET"]),
            Route("/warnings/v1/alerts/{name}", g(alert), methods=["GET"]),
            Route("/warnings/v1/geojson", g(geojson), methods=["GET"])]


def openapi_paths() -> dict[str, Any]:
    """The routes' entries in the node's OpenAPI document (``api.openapi``)."""
    err = {"description": "error (TAXII's error message; the same 404 for absent and hidden)",
           "content": {"application/taxii+json;version=2.1": {"schema": {"type": "object"}}}}
    refused = {"304": {"description": "not modified (If-None-Match)"},
               "400": err, "401": err, "404": err, "429": err}
    limit = {"name": "limit", "in": "query",
             "schema": {"type": "integer", "minimum": 1, "maximum": MAX_INDEX}}
    name = {"name": "name", "in": "path", "required": True,
            "schema": {"type": "string", "minLength": 1}}
    return {
        "/warnings/v1/alerts": {"get": {
            "summary": "Index of the CAP messages the caller may read, newest first",
            "parameters": [limit], "responses": {
                "200": {"description": "index", "content": {
                    "application/json": {"schema": {"type": "object"}}}}, **refused}}},
        "/warnings/v1/alerts/{name}": {"get": {
            "summary": "One CAP 1.2 alert: IDENTIFIER.cap", "parameters": [name],
            "responses": {"200": {"description": "CAP 1.2 alert", "content": {
                alerting.CAP_MEDIA: {"schema": {"type": "string"}}}}, **refused}}},
        "/warnings/v1/geojson": {"get": {
            "summary": "Tracks, impact ellipses and warned regions (RFC 7946)",
            "parameters": [], "responses": {"200": {"description": "GeoJSON", "content": {
                alerting.GEOJSON_MEDIA: {"schema": {"type": "object"}}}}, **refused}}},
    }
