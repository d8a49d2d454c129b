"""People and access: users added and revoked, failed sign-ins on record, an item read under
policy.
"""

from __future__ import annotations

import re
from collections.abc import Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from gsomia.core import roles
from gsomia.core.audit import AuditKind
from gsomia.core.custody import (
    CustodyRecord,
    NodeUser,
    Revocation,
    StoredItem,
    records_detail,
    stamp,
    token_hash,
)
from gsomia.core.errors import MalformedInput, PolicyDenied, ProofInvalid
from gsomia.core.labels import Scheme
from gsomia.core.policy import Decision
from gsomia.core.types import Party
from gsomia.service import access
from gsomia.service.ports import KeyStore, UnitOfWork

_PURPOSE = re.compile(r"^[a-z0-9][a-z0-9-]*$")


def add_user(uow: UnitOfWork, *, keys: KeyStore, schemes: Mapping[Party, Scheme], name: str,
             clearance: str, need_to_know: Iterable[str], token: str, now: datetime,
             actor: str = "operator", purposes: Collection[str] | None = None,
             role: str = "reader", appointer: NodeUser | None = None) -> NodeUser:
    """Register a person with a clearance in the node's scheme and need-to-know purposes.

    ``token`` is the secret the shell drew; only its hash is stored. ``purposes``: those the
    agreements know (``Catalogue.vocabulary.purposes``), which the operator's commands pass;
    a misspelt need-to-know would otherwise quietly open nothing. ``role``: what the person
    may do at the dashboard's desk (:mod:`gsomia.core.roles`). ``appointer``: the user adding
    them from the desk (None: the node's host), refused (:class:`PolicyDenied`) unless an
    admin appointing within their own clearance, need-to-know and role.
    """
    role = roles.parse_role(role)
    if not name or not name.strip() or len(name) > 100 or any(c.isspace() for c in name):
        raise MalformedInput(f"{name!r} is not a user name", where="name",
                             expected="1 to 100 characters without spaces")
    scheme = schemes.get(keys.party)
    if scheme is None:
        raise MalformedInput(f"no classification scheme for {keys.party}", where="party")
    scheme.level(clearance, where="clearance")
    needed = frozenset(p.strip() for p in need_to_know if p.strip())
    if not needed:
        raise MalformedInput("no need-to-know given", where="need_to_know",
                             expected="one or more purposes such as dprk-missile")
    for p in sorted(needed):
        if not _PURPOSE.match(p):
            raise MalformedInput(f"{p!r} is not a purpose", where="need_to_know",
                                 expected="purpose codes such as dprk-missile")
        if purposes is not None and p not in purposes:
            raise MalformedInput(f"{p!r} is not a purpose of any agreement",
                                 where="need_to_know",
                                 expected="one or more of " + ", ".join(sorted(purposes)))
    if len(token) < 32:
        raise MalformedInput("token too short", where="token", expected="32 or more characters")
    if appointer is not None:
        allowed = access.acting(appointer.role, roles.Action.USER_ADD)
        problem = None if allowed.permit else allowed.reason
        problem = problem or roles.appointment_problem(
            appointer.person(), appointer.role, clearance=clearance, need_to_know=needed,
            role=role, schemes=schemes)
        if problem is not None:
            raise PolicyDenied((problem,))
    user = NodeUser(name, keys.party, clearance, needed, token_hash(token), now, role)
    with uow:
        if uow.repo.user_named(name) is not None:
            raise MalformedInput(f"user {name!r} already exists", where="name",
                                 expected="a new name")
        event = uow.audit.append(
            AuditKind.USER_ADDED, now, actor,
            details={**user.public_json(), "records": records_detail(users=[user.digest()])})
        uow.repo.add_user(user, seq=event.seq)
        uow.commit()
    return user


def revoke_user(uow: UnitOfWork, *, name: str, now: datetime,
                actor: str = "operator") -> Revocation:
    """Withdraw a user's token: every interface refuses it from this commit on.

    The user stays in the register (their past reads remain attributable), marked revoked.
    """
    with uow:
        user = uow.repo.user_named(name)
        if user is None:
            raise MalformedInput(f"no user {name!r} on this node", where="name",
                                 expected="the name of a registered user (gsomia user list)")
        if name in uow.repo.revoked_names():
            raise MalformedInput(f"the token of {name!r} is already revoked", where="name",
                                 expected="a user whose token is active")
        revocation = Revocation(name, user.token_hash, actor, now)
        event = uow.audit.append(
            AuditKind.USER_REVOKED, now, actor,
            details={"name": name, "revoked_at": stamp(now),
                     "records": records_detail(revocations=[revocation.digest()])})
        uow.repo.add_revocation(revocation, seq=event.seq)
        uow.commit()
    return revocation


@dataclass(frozen=True, slots=True)
class FailedAuthentications:
    """Failed authentications of one source against one account through one interface,
    counted over ``first``..``last`` (``throttled``: of them, refused unchecked because the
    source or account was being slowed down)."""

    source: str
    account: str | None
    interface: str
    failures: int
    throttled: int
    first: datetime
    last: datetime

    def to_json(self) -> dict[str, Any]:
        return {"source": self.source, "account": self.account, "interface": self.interface,
                "failures": self.failures, "throttled": self.throttled,
                "first": stamp(self.first), "last": stamp(self.last)}


def record_failed_authentications(uow: UnitOfWork, *, counts: Sequence[FailedAuthentications],
                                  now: datetime) -> None:
    """Audit failed sign-ins and bad tokens, one event per (source, account, interface)
    count, all in one commit. The caller aggregates, so a flood adds few events."""
    if not counts:
        return
    with uow:
        for c in counts:
            uow.audit.append(AuditKind.AUTHENTICATION_FAILED, now, c.source,
                             details=c.to_json())
        uow.commit()


@dataclass(frozen=True, slots=True)
class Reading:
    """A granted read: the item, its custody as held here, the decision, who read it."""

    item: StoredItem
    custody: CustodyRecord
    decision: Decision
    user: NodeUser
    seq: int


def read_item(uow: UnitOfWork, *, schemes: Mapping[Party, Scheme], token: str, item_id: str,
              version: str | None = None, now: datetime) -> Reading:
    """Art. 7: a person reads an item only with clearance and need-to-know; always audited.

    Raises :class:`PolicyDenied` (after committing the denial to the log) when refused. An
    item the person may not read and an item not held get the same answer, word for word
    (:func:`not_readable`); the log keeps the true reasons.
    """
    what = f"{item_id}" + (f" version {version}" if version else "")
    with uow:
        user = uow.repo.user_by_token(token_hash(token))
        if user is None:
            uow.audit.append(AuditKind.ACCESS_DENIED, now, "unknown", item_id=item_id or None,
                             item_version=version if item_id else None,
                             details={"reasons": ["no user holds this token"]})
            uow.commit()
            raise PolicyDenied(("no user holds this token",))
        item = uow.repo.get_item(item_id, version)
        if item is None:
            uow.audit.append(AuditKind.ACCESS_DENIED, now, user.name, item_id=item_id or None,
                             item_version=version if item_id else None,
                             details={"reasons": [f"{what} is not held here"]})
            uow.commit()
            raise PolicyDenied((not_readable(what),))
        custody = uow.repo.custody_of(item.item_id, item.version)
        if not custody:
            raise ProofInvalid(f"{item.item_id} version {item.version} has no custody record")
        current = custody[-1]
        decision = access.reading(user.person(), current.national_label, schemes)
        kind = AuditKind.ACCESS_GRANTED if decision.permit else AuditKind.ACCESS_DENIED
        event = uow.audit.append(
            kind, now, user.name, item_id=item.item_id, item_version=item.version,
            content_hash=item.content_hash() if decision.permit else None,
            details={"reasons": list(decision.reasons),
                     "marking": current.national_label.national_marking(),
                     "clearance": user.clearance})
        uow.commit()
    if not decision.permit:
        raise PolicyDenied((not_readable(what),))
    return Reading(item, current, decision, user, event.seq)


def not_readable(what: str) -> str:
    """The one answer to a read of an item that is not held or that the reader may not read:
    saying which, or why (a level, a purpose), would tell what the reader may not know."""
    return f"no item {what} that you may read is held here"
