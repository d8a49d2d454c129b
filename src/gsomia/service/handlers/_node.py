"""Opening a node's log with its identity as event 0."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Any

from gsomia.core.audit import AuditEvent, AuditKind
from gsomia.core.errors import MalformedInput
from gsomia.service.ports import KeyStore, UnitOfWork


def initialise(uow: UnitOfWork, *, keys: KeyStore, now: datetime,
               identity: Mapping[str, Any]) -> AuditEvent:
    """Open the log with the node's identity (party and key fingerprints) as event 0."""
    with uow:
        if uow.audit.size:
            raise MalformedInput("the database already holds a node's audit log",
                                 where="database", expected="an empty database for a new node")
        event = uow.audit.append(AuditKind.NODE_INITIALISED, now, "node",
                                 details={"party": keys.party, **identity})
        uow.commit()
    return event
