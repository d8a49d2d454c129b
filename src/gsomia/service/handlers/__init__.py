"""What a node does: one unit of work per use case, its audit events in the same commit.

Every handler takes ``now`` from its caller (the shell reads the clock) and fails closed: an
error before ``commit()`` leaves nothing behind, neither records nor events. A denial that
must be on record (an access refused, an item refused on receipt, a classification change
refused) is committed first and raised afterwards.

Use cases: :func:`initialise`, :func:`publish`, :func:`publish_many`, :func:`ingest`,
:func:`add_user`, :func:`read_item`, :func:`grant_consent`, :func:`refuse_consent`,
:func:`record_consent`, :func:`refuse_action` (a desk action refused),
:func:`change_classification`, :func:`apply_classification_notice`,
:func:`report_incident`, :func:`record_receipt`; and on the read side
:func:`verify_audit`, :func:`prove`, :func:`check_proof`.

The package's modules, by role (private: the package re-exports what the rest of
gsomia uses, and tools/split_module.py handlers made them from one handlers.py):

- ``_node``: Opening a node's log with its identity as event 0.
- ``_publishing``: Publishing: an item (or a batch) labelled, stored and logged, with its custody.
- ``_receiving``: Receiving: an item from a partner checked, stored or refused on record.
- ``_people``: People and access: users added and revoked, failed sign-ins on record, an item read
  under policy.
- ``_custody``: Consents, classification changes, incidents and receipts, each on record; a release
  checked.
- ``_verifying``: Verifying the log against its signed tree heads, and the operator accepting a
  head.
- ``_proofs``: Proofs of an item's place in the log: made from the store, and checked.
"""

from __future__ import annotations

from gsomia.service.handlers._custody import (
    apply_classification_notice,
    change_classification,
    check_release,
    grant_consent,
    record_action_summaries,
    record_consent,
    record_receipt,
    refuse_action,
    refuse_bounded,
    refuse_consent,
    report_incident,
)
from gsomia.service.handlers._node import initialise
from gsomia.service.handlers._people import (
    FailedAuthentications,
    add_user,
    not_readable,
    read_item,
    record_failed_authentications,
    revoke_user,
)
from gsomia.service.handlers._proofs import check_proof, latest_head, prove
from gsomia.service.handlers._publishing import (
    ALREADY_HELD,
    NOT_A_NEW_VERSION,
    REFUSED_TO_PUBLISH,
    LabelRequest,
    Published,
    make_label,
    publish,
    publish_many,
)
from gsomia.service.handlers._receiving import (
    Incoming,
    Verdict,
    ingest,
    ingest_into,
    screen_incoming,
)
from gsomia.service.handlers._verifying import accept_head, verify_audit

__all__ = [
    "ALREADY_HELD",
    "NOT_A_NEW_VERSION",
    "REFUSED_TO_PUBLISH",
    "FailedAuthentications",
    "Incoming",
    "LabelRequest",
    "Published",
    "Verdict",
    "accept_head",
    "add_user",
    "apply_classification_notice",
    "change_classification",
    "check_proof",
    "check_release",
    "grant_consent",
    "ingest",
    "ingest_into",
    "initialise",
    "latest_head",
    "make_label",
    "not_readable",
    "prove",
    "publish",
    "publish_many",
    "read_item",
    "record_action_summaries",
    "record_consent",
    "record_failed_authentications",
    "record_receipt",
    "refuse_action",
    "refuse_bounded",
    "refuse_consent",
    "report_incident",
    "revoke_user",
    "screen_incoming",
    "verify_audit",
]
