"""The cryptographic and audit core: signatures, bindings, HPKE, Merkle roots, log verification.

The single-core Ed25519 verify rate is the physical limit of verified ingest (issue 3); the
binding verify rate is printed beside it as a ratio. Canonical JSON is timed against the
``rfc8785`` library it must match byte for byte. ``audit verify`` over 1,000,000 events is
timed here without the database (the store adds reading rows; the aim for the whole is 30 s).

Rates use the process's CPU time, not the wall clock: this is single-threaded work, and on a
shared 2-core machine the wall clock also counts time spent waiting for a core. The
``verify_log`` figures give both.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import rfc8785
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey

from gsomia.core import audit, crypto
from gsomia.core.audit import AuditEvent, AuditKind, AuditRecord, MerkleAccumulator

LABEL = {"policy": "jpn-kor-gsomia-2016", "originator": "KOR", "level": "군사II급비밀",
         "rel_to": ["KOR", "JPN"], "purpose": "dprk-missile", "caveats": [],
         "created": "2017-03-06T00:00:00.000Z"}
CONTENT: dict[str, Any] = {
    "type": "indicator", "spec_version": "2.1",
    "id": "indicator--8e2e2d2b-17d4-4cbf-938f-98ee46b3cd3f",
    "created": "2017-03-06T00:00:00.000Z", "modified": "2017-03-06T00:00:00.000Z",
    "name": "Four ballistic missiles launched from Tongchang-ri",
    "description": "Launch preparation observed at the Sohae site; TEL movement, fuelling "
                   "activity and a cleared launch pad consistent with an ER Scud salvo. "
                   "Assessed by human intelligence reporting corroborated by early radar.",
    "indicator_types": ["malicious-activity"],
    "pattern": "[x-gsomia-launch:site = 'Tongchang-ri' AND x-gsomia-launch:count = 4]",
    "pattern_type": "stix", "valid_from": "2017-03-06T00:00:00Z",
    "confidence": 85, "labels": ["dprk", "ballistic-missile"],
    "external_references": [{"source_name": "gsomia", "external_id": "KOR-2017-0306-01"}],
}


def _rate(fn: Callable[[], object], seconds: float = 1.0) -> float:
    """Calls per second of ``fn`` over about ``seconds``."""
    n, batch = 0, 1
    start = time.process_time()
    while True:
        for _ in range(batch):
            fn()
        n += batch
        elapsed = time.process_time() - start
        if elapsed >= seconds:
            return n / elapsed
        batch = min(batch * 2, 4096)


def _event(seq: int) -> AuditEvent:
    kind = (AuditKind.RELEASE_DECIDED, AuditKind.SENT, AuditKind.ACCESS_GRANTED)[seq % 3]
    return AuditEvent(seq, kind, T0 + timedelta(milliseconds=seq), "node",
                      f"indicator--{seq // 3:08d}", "2017-03-06T00:00:00.000Z", CHASH,
                      {"recipient": "JPN", "permit": True,
                       "reasons": ["jpn-kor-gsomia-2016 in force", "JPN in REL TO"]})


def _events(n: int) -> list[dict[str, Any]]:
    """``n`` store rows (event JSON plus leaf hash), cycling through realistic events.

    Built from one template by the same leaf encoder the log uses, which is quicker than a
    million AuditEvent constructions (timed separately as ``event_appends_per_s``).
    """
    rows = []
    template = _event(0).to_json()
    for seq in range(n):
        row = {**template, "seq": seq, "kind": _KINDS[seq % 3],
               "at": audit._iso(T0 + timedelta(milliseconds=seq)),
               "item_id": f"indicator--{seq // 3:08d}"}
        leaf = audit._leaf_bytes(seq, row["kind"], row["at"], row["actor"], row["item_id"],
                                 row["item_version"], row["content_hash"], row["details"])
        row["leaf_hash"] = audit.leaf_hash(leaf).hex()
        rows.append(row)
    return rows


T0 = datetime(2017, 3, 6, tzinfo=UTC)
CHASH = crypto.sha256(b"item").hex()
_KINDS = ("release-decided", "sent", "access-granted")


def run() -> dict[str, Any]:
    out: dict[str, Any] = {}
    key = Ed25519PrivateKey.from_private_bytes(b"\x01" * 32)
    pub = key.public_key()
    msg = crypto.sha256(b"digest")
    sig = key.sign(msg)

    out["ed25519_verify_per_s"] = _rate(lambda: pub.verify(sig, msg))
    out["ed25519_sign_per_s"] = _rate(lambda: key.sign(msg))
    binding = crypto.bind(LABEL, CONTENT, key)
    out["binding_verify_per_s"] = _rate(
        lambda: crypto.verify_binding(LABEL, CONTENT, binding, pub))
    out["binding_sign_per_s"] = _rate(lambda: crypto.bind(LABEL, CONTENT, key))
    out["binding_verify_vs_ed25519_verify"] = (
        out["binding_verify_per_s"] / out["ed25519_verify_per_s"])

    out["canonical_per_s"] = _rate(lambda: crypto.canonical(CONTENT))
    out["rfc8785_library_per_s"] = _rate(lambda: rfc8785.dumps(CONTENT))
    out["canonical_vs_rfc8785_library"] = out["canonical_per_s"] / out["rfc8785_library_per_s"]

    rx = X25519PrivateKey.from_private_bytes(b"\x02" * 32)
    rx_pub = rx.public_key()
    payload = crypto.canonical({"label": LABEL, "content": CONTENT,
                                "binding": binding.to_json()})

    def hpke_round() -> None:
        enc, ct = crypto.seal(rx_pub, b"info", b"aad", payload)
        crypto.open_(rx, enc, b"info", b"aad", ct)

    out["hpke_seal_open_per_s"] = _rate(hpke_round)
    at = datetime(2017, 3, 6, tzinfo=UTC)
    nonce = bytes(16)
    body = {"label": LABEL, "content": CONTENT, "binding": binding.to_json()}

    def envelope_round() -> None:
        env = crypto.seal_envelope(sender="KOR", recipient="JPN", item_id=CONTENT["id"],
                                   version=CONTENT["modified"], nonce=nonce, sent_at=at,
                                   payload=body, sender_key=key, recipient_public=rx_pub)
        crypto.open_envelope(env, recipient="JPN", recipient_private=rx, sender_public=pub)

    out["envelope_seal_open_per_s"] = _rate(envelope_round)

    n = 1_000_000
    leaves = [audit.leaf_hash(i.to_bytes(8, "big")) for i in range(n)]
    start = time.process_time()
    top = audit.root(leaves)
    out["root_1m_leaves_s"] = time.process_time() - start
    acc = MerkleAccumulator()
    start = time.process_time()
    for h in leaves:
        acc.append(h)
    out["accumulator_appends_per_s"] = n / (time.process_time() - start)
    assert acc.root() == top
    start = time.process_time()
    proof = audit.inclusion_proof(leaves, 123_457, n)
    out["inclusion_proof_1m_s"] = time.process_time() - start
    audit.verify_inclusion(leaves[123_457], 123_457, n, proof, top)
    del leaves

    appended = MerkleAccumulator()
    count = 100_000
    start = time.process_time()
    for seq in range(count):
        appended.append(AuditRecord.of(_event(seq)).leaf_hash)
    out["event_appends_per_s"] = count / (time.process_time() - start)

    rows = _events(n)
    assert AuditRecord.of(_event(4)).to_json() == rows[4]
    start, wall = time.process_time(), time.perf_counter()
    verdict = audit.verify_log(rows)
    out["verify_log_1m_rows_s"] = time.process_time() - start
    out["verify_log_1m_rows_wall_s"] = time.perf_counter() - wall
    head = audit.sign_tree_head(n, verdict.root, at, key)
    start = time.process_time()
    verdict = audit.verify_log(rows, head, public_key=pub)
    out["verify_log_1m_rows_with_head_s"] = time.process_time() - start
    assert verdict.ok, verdict.problems[:3]

    print(f"Ed25519 verify        {out['ed25519_verify_per_s']:>12,.0f} /s  (one core)")
    print(f"Ed25519 sign          {out['ed25519_sign_per_s']:>12,.0f} /s")
    print(f"binding verify        {out['binding_verify_per_s']:>12,.0f} /s  "
          f"= {out['binding_verify_vs_ed25519_verify']:.2f} x Ed25519 verify")
    print(f"binding sign          {out['binding_sign_per_s']:>12,.0f} /s")
    print(f"canonical (ours)      {out['canonical_per_s']:>12,.0f} /s  "
          f"= {out['canonical_vs_rfc8785_library']:.2f} x rfc8785 "
          f"({out['rfc8785_library_per_s']:,.0f} /s), same bytes")
    print(f"HPKE seal+open        {out['hpke_seal_open_per_s']:>12,.0f} /s")
    print(f"envelope seal+open    {out['envelope_seal_open_per_s']:>12,.0f} /s")
    print(f"root of 1M leaves     {out['root_1m_leaves_s']:>12.2f} s")
    print(f"accumulator appends   {out['accumulator_appends_per_s']:>12,.0f} /s")
    print(f"inclusion proof (1M)  {out['inclusion_proof_1m_s']:>12.2f} s")
    print(f"event appends         {out['event_appends_per_s']:>12,.0f} /s  "
          "(AuditEvent + leaf hash + accumulator)")
    print(f"verify_log 1M rows    {out['verify_log_1m_rows_s']:>12.2f} s CPU "
          f"({out['verify_log_1m_rows_wall_s']:.2f} s wall, no database)")
    print(f"  with signed head    {out['verify_log_1m_rows_with_head_s']:>12.2f} s")
    return {k: round(v, 3) if isinstance(v, float) else v for k, v in out.items()}


if __name__ == "__main__":
    run()
