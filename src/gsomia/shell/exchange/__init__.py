"""Delivery between nodes: the transport. It carries bytes and calls the handlers of
:mod:`gsomia.service.exchange`, which decide and record.

Sending. Every commit that stores an item (any publish path, a receipt of a partner's
envelope) or obtains a consent queues its deliveries in the same commit
(:mod:`gsomia.service.outbox`); :func:`scan` is crash recovery only, from a watermark on the
audit ``seq``, for items stored before the node had partners. :class:`Sender` pushes due
rows in batches over mutual TLS (httpx, one kept-alive connection per partner), each
envelope sealed with a fresh nonce (a retry is a new envelope, so the recipient's replay
check never refuses a retry), hands the partner's answers to
:func:`gsomia.service.exchange.settle` (one commit per batch), and backs off exponentially
on failure. The same courier posts the notices of the one outbox (incident reports,
classification notices) and hands the answers to
:func:`gsomia.service.notices.settle_notices`, with the same backoff. It seals the next
batch while the partner works on the one in flight, and sleeps between passes until a
commit is signalled (the commit signal every unit of work sends,
:func:`gsomia.shell.store.signal_commit`; :func:`wake`) or the earliest queued row is due,
with a pass every :data:`FALLBACK_S` seconds for what a lost signal or a crash left (SQLite's
``data_version``, looked at every few milliseconds, only where another sender holds the
signal) rather than polling the tables.

Receiving. :func:`receive` reads which nonces the replay register holds and hands the batch
to :func:`gsomia.service.exchange.receive` (checks, ingest, receipts, refusals audited as
``envelope-refused``, nonces and relays in the same commit).

``partners.json`` in the node folder (written by ``gsomia federation up``) names every
party's URL and public keys, and which of them this node delivers to (its topology).

The package's modules, by role (private: the package re-exports what the rest of
gsomia uses, and tools/split_module.py exchange made them from one exchange.py):

- ``_node``: What the transport needs of a node (``NodePort``), and the clock it reads.
- ``_partners``: Partners: ``partners.json`` read (again only when it changed) and written, and the
  mutual-TLS clients towards each party's node, pinned to its CA.
- ``_outbox``: The outbox: crash recovery's scan, a federation node's publish, what is queued, and a
  caller's wait for it.
- ``_receiving``: Receiving: a partner's batch of envelopes handed to the handlers over the replay
  register read, in one commit.
- ``_sender``: The sender: one partner link's loop, sealing batches of envelopes, posting them and
  the notices, and settling the answers, with backoff.
- ``_wake``: Wake-ups: the in-process event that wakes a node's couriers, and the commit signals
  read.
- ``_progress``: The couriers' progress: how far each link got with the rows the commits
  queued to it, for the warning centre beside them.
- ``_couriers``: The couriers: one sender per partner link, each on a thread of its own, woken at
  the commits that concern it; the shape of a node's background loops.
- ``_consents``: Consent requests over the peer API: ids proposed and checked, requests kept, listed
  and decided.
"""

from __future__ import annotations

from gsomia.service.exchange import Delivered
from gsomia.shell.exchange._consents import (
    consent_row,
    consent_rows,
    decide_request,
    new_request_id,
    proposed_request_id,
    record_request,
)
from gsomia.shell.exchange._couriers import (
    Couriers,
    in_background,
    start_sender,
    stop_background,
)
from gsomia.shell.exchange._node import Clock, NodePort
from gsomia.shell.exchange._outbox import (
    DELIVERED,
    PENDING,
    REFUSED,
    outbox_rows,
    pending,
    publish,
    scan,
    wait_until,
)
from gsomia.shell.exchange._partners import (
    COURIER_IDLE_KEPT_S,
    PARTIES,
    PARTNER_CONNECTIONS_KEPT,
    PARTNER_IDLE_KEPT_S,
    PARTNERS_FILE,
    Partners,
    Peer,
    client_tls,
    peer_client,
    require_partners,
)
from gsomia.shell.exchange._progress import CourierProgress
from gsomia.shell.exchange._receiving import receive
from gsomia.shell.exchange._sender import (
    FALLBACK_S,
    NOTICE_PATHS,
    Kick,
    Sender,
    SendReport,
    payloads_of,
)

__all__ = [
    "COURIER_IDLE_KEPT_S",
    "DELIVERED",
    "FALLBACK_S",
    "NOTICE_PATHS",
    "PARTIES",
    "PARTNERS_FILE",
    "PARTNER_CONNECTIONS_KEPT",
    "PARTNER_IDLE_KEPT_S",
    "PENDING",
    "REFUSED",
    "Clock",
    "CourierProgress",
    "Couriers",
    "Delivered",
    "Kick",
    "NodePort",
    "Partners",
    "Peer",
    "SendReport",
    "Sender",
    "client_tls",
    "consent_row",
    "consent_rows",
    "decide_request",
    "in_background",
    "new_request_id",
    "outbox_rows",
    "payloads_of",
    "peer_client",
    "pending",
    "proposed_request_id",
    "publish",
    "receive",
    "record_request",
    "require_partners",
    "scan",
    "start_sender",
    "stop_background",
    "wait_until",
]
