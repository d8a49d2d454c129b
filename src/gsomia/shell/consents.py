"""Consent under the third-party rule, carried between partners: a holder asks the
originator (``consent_request``), the originator's operator answers (``answer_consent``).
The handlers decide and record; this module carries the request and the answer over the
peer API, from the command line and the dashboard's desk alike.

Standing consents (``consent standing grant|revoke|list``) are the originator's in advance:
granted or revoked here, they travel to the partners through the notices outbox."""

from __future__ import annotations

import json
from typing import Any

from gsomia.core.errors import MalformedInput, PartnerUnreachable, PolicyDenied
from gsomia.core.outbox import STANDING_CONSENT, STANDING_REVOCATION
from gsomia.shell.notices import queued_to

__all__ = ["answer_consent", "consent_request", "standing_grant", "standing_list",
           "standing_revoke"]


def _post(node: Any, peer_url: str, path: str, body: dict[str, Any],
          client: Any = None) -> Any:
    from contextlib import nullcontext

    import httpx

    from gsomia.shell.exchange import peer_client

    # A caller making many requests passes its own client: a new one costs a TLS context.
    with nullcontext(client) if client is not None else peer_client(node.folder) as client:
        try:
            response = client.post(peer_url.rstrip("/") + path, content=json.dumps(body))
        except httpx.ConnectError as exc:
            raise PartnerUnreachable(f"the partner at {peer_url} does not answer: {exc}",
                          where="partner") from None
        except OSError as exc:
            raise MalformedInput(f"the partner at {peer_url} does not answer: {exc}",
                                 where="partner") from None
        except Exception as exc:  # httpx errors
            raise MalformedInput(f"the partner at {peer_url} does not answer: {exc}",
                                 where="partner") from None
    try:
        data = response.json()
    except ValueError:
        data = {"description": response.text[:300]}
    if response.status_code >= 400:
        # As the partner sent them when they read (a list of str, or one str): read as they
        # came, a str was told a letter a reason and a reason that is no str raised (tidy29).
        details = data.get("details") if isinstance(data, dict) else None
        given = details.get("reasons") if isinstance(details, dict) else None
        if isinstance(given, str) and given:
            reasons = [given]
        elif isinstance(given, list) and given and all(isinstance(r, str) for r in given):
            reasons = list(given)
        else:
            description = data.get("description", "") if isinstance(data, dict) else ""
            reasons = [f"HTTP {response.status_code}: {description}"]
        if response.status_code == 429:  # the partner at a bound: a person is told, not queued
            from gsomia.core.outbox import retry_after
            from gsomia.shell.store import now_utc

            wait = retry_after(response.headers.get("retry-after"), now_utc())
            reasons.append("the partner takes no more now: ask again "
                           + (f"in {wait:.0f} s or later" if wait else "later"))
        raise PolicyDenied(tuple(reasons))
    return data


def consent_request(node: Any, item_id: str, to: str, reason: str, *,
                    client: Any = None) -> dict[str, Any]:
    from gsomia.shell.exchange import (
        decide_request,
        new_request_id,
        record_request,
        require_partners,
    )
    from gsomia.shell.store import now_utc

    recipient = node.catalogue.vocabulary.party(to, where="to")
    partners = require_partners(node)
    with node.store.repository() as repo:
        item = repo.get_item(item_id)
        kept = repo.pending_outgoing_request(item_id, recipient) if item is not None else None
    if item is None:
        raise MalformedInput(f"{item_id} is not held here", where="item")
    if item.originator == node.party:
        raise MalformedInput(f"{item_id} originated here: no consent is needed",
                             where="item")
    origin = partners.peer(item.originator)
    # Pending here, in a commit of its own, before it is asked: the originator may answer
    # (a refusal or a grant) before this POST returns, and a reply counts only for a request
    # pending here (an answer that found none was refused, and lost). The id is proposed to
    # the originator, so both sides name the request alike.
    # Asking again after an answer was lost: the request still pending here, under its id,
    # which the originator answers with the one it kept (never a second request).
    now = now_utc()
    request_id = kept or new_request_id(node, now)
    if kept is None:
        record_request(node, request_id=request_id, item_id=item_id, holder=node.party,
                       recipient=recipient, reason=reason, direction="outgoing", now=now,
                       actor="operator")
    body = {"item_id": item_id, "recipient": recipient, "reason": reason,
            "request": request_id}
    try:
        answer = _post(node, origin.url, "/peer/v1/consents/requests/", body, client)
    except (PartnerUnreachable, PolicyDenied):
        # The originator got nothing, or refused to take the request: nothing will answer
        # it. (Any other failure may have reached it: pending, its answer still counts.)
        decide_request(node, request_id, "failed", now_utc())
        raise
    except MalformedInput as exc:
        # No answer (a timeout): the originator may have it or not. The node's courier
        # asks again under the same id, with backoff, until the originator takes it or
        # refuses it for good (it was left pending for ever).
        from gsomia.service import exchange as exchange_handlers

        resent = exchange_handlers.resend_consent_request(
            node.uow(), request_id=request_id, originator=item.originator,
            body=json.dumps(body, ensure_ascii=False, sort_keys=True), now=now_utc())
        raise MalformedInput(f"{exc.what} (request {request_id} is kept pending: the "
                             "originator may have it; "
                             + ("the node sends it again until the originator takes it)"
                                if resent else "ask again if no answer comes)"),
                             where="partner") from None
    asked_as = str(answer.get("request", ""))
    if not asked_as:
        raise MalformedInput("the originator returned no request id", where="partner")
    out = {"request": asked_as, "item_id": item_id, "originator": item.originator,
           "recipient": recipient,
           "status": _state(node, request_id, item.originator, origin, recipient, answer)}
    if asked_as != request_id:  # an originator that names requests itself
        out["recorded_as"] = request_id
    return out


def _state(node: Any, request_id: str, originator: str, origin: Any, recipient: str,
           answer: Any) -> str:
    """The request's state once the originator has answered the POST. Asked again after its
    reply was lost, the originator says how it answered (granted: with the signed consent),
    which is kept here as the reply would have been; then this node's record, which the
    reply may also have settled while the POST was on its way (bounds19: it said "pending"
    whatever either side held)."""
    from contextlib import suppress

    from gsomia.core import crypto
    from gsomia.service import exchange as exchange_handlers
    from gsomia.service import handlers
    from gsomia.shell.exchange import consent_row
    from gsomia.shell.store import now_utc

    said = answer.get("status")
    row = consent_row(node, request_id)
    if row["status"] == "pending" and said == "granted" and \
            isinstance(answer.get("consent"), dict):
        consent = crypto.Consent.from_json(answer["consent"])
        if (consent.item_id, consent.originator, consent.recipient) != \
                (row["item_id"], originator, recipient):
            raise MalformedInput(f"the originator answered request {request_id} with a "
                                 "consent to another release", where="partner")
        handlers.record_consent(node.uow(), consent=consent,
                                originator_public=origin.signing_public, now=now_utc(),
                                actor=originator)
    elif row["status"] == "pending" and said == "denied":
        with suppress(PolicyDenied):  # answered meanwhile, by the reply
            exchange_handlers.record_consent_refusal(
                node.uow(), item_id=row["item_id"], originator=originator,
                reason=f"request {request_id} was denied (said when it was asked again: "
                       "the reply was lost)", now=now_utc())
    status = str(consent_row(node, request_id)["status"])
    # Still pending here while the originator has answered (it sent no consent): its word.
    return str(said) if status == "pending" and said in ("granted", "denied") else status


def answer_consent(node: Any, request_id: str, grant: bool, reason: str, *,
                   client: Any = None, actor: str = "operator") -> dict[str, Any]:
    from gsomia.service import handlers
    from gsomia.shell.exchange import consent_row, decide_request, require_partners
    from gsomia.shell.store import now_utc

    row = consent_row(node, request_id)
    if row["direction"] != "incoming" or row["status"] != "pending":
        raise MalformedInput(f"request {request_id} is {row['direction']} and "
                             f"{row['status']}", where="request",
                             expected="a pending request made to this node")
    partners = require_partners(node)
    holder = partners.peer(row["holder"])
    now = now_utc()
    out: dict[str, Any] = {"request": request_id, "item_id": row["item_id"],
                           "holder": row["holder"], "recipient": row["recipient"]}
    if grant:
        consent = handlers.grant_consent(node.uow(), keys=node.keys, item_id=row["item_id"],
                                         recipient=row["recipient"], now=now, actor=actor)
        decide_request(node, request_id, "granted", now)
        _post(node, holder.url, "/peer/v1/consents/replies/",
              {"granted": True, "request": request_id, "consent": consent.to_json()}, client)
        return {**out, "status": "granted", "consent": consent.to_json()}
    handlers.refuse_consent(node.uow(), keys=node.keys, item_id=row["item_id"],
                            request=request_id, holder=row["holder"],
                            recipient=row["recipient"], reason=reason, now=now, actor=actor)
    decide_request(node, request_id, "denied", now)
    _post(node, holder.url, "/peer/v1/consents/replies/",
          {"granted": False, "request": request_id, "item_id": row["item_id"],
           "reason": reason}, client)
    return {**out, "status": "denied"}


# ---- standing consents ------------------------------------------------------------------------


def standing_grant(node: Any, *, to: str, categories: list[str], purpose: str,
                   until: str, since: str | None = None,
                   actor: str = "operator") -> dict[str, Any]:
    """As originator, grant a standing consent; the outbox carries it to the
    partners (``gsomia node run`` sends it, and retries until each has answered)."""
    import uuid

    from gsomia.core.types import instant
    from gsomia.service import standing
    from gsomia.shell.store import now_utc

    now = now_utc()
    consent = standing.grant_standing_consent(
        node.uow(), keys=node.keys, catalogue=node.catalogue,
        consent_id=f"standing-consent--{uuid.uuid4()}", recipient=to,
        categories=sorted(set(categories)), purpose=purpose,
        not_before=instant(since, where="--from") if since else now,
        not_after=instant(until, where="--until"), now=now, actor=actor)
    return {**consent.to_json(), "sent_to": queued_to(node, STANDING_CONSENT, consent.id)}


def standing_revoke(node: Any, consent_id: str, *, actor: str = "operator") -> dict[str, Any]:
    """As originator, revoke a standing consent; the partners are told as for a grant."""
    from gsomia.service import standing
    from gsomia.shell.store import now_utc

    revocation = standing.revoke_standing_consent(node.uow(), keys=node.keys,
                                                  consent_id=consent_id, now=now_utc(),
                                                  actor=actor)
    return {**revocation.to_json(),
            "sent_to": queued_to(node, STANDING_REVOCATION, f"{consent_id}/revoked")}


def standing_list(node: Any) -> list[dict[str, Any]]:
    """Standing consents given and obtained here, each with its state now."""
    from gsomia.service import standing
    from gsomia.shell.store import now_utc

    with node.store.repository() as repo:
        records = repo.standing_consents()
    return standing.listing(records, now_utc())
