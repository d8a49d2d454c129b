"""The custody records' fast paths give exactly what the slow, obviously right ones give."""

from __future__ import annotations

import hashlib
from datetime import UTC, datetime, timedelta, timezone

import pytest
from hypothesis import given, settings
from hypothesis import strategies as hs

from gsomia.core import crypto
from gsomia.core.custody import (
    ClassificationNotice,
    CreatedCustody,
    CustodyRecord,
    NodeUser,
    StoredItem,
    record_bytes,
    sign_classification_notice,
    stamp,
    token_hash,
    verify_binding_bytes,
    verify_classification_notice,
)
from gsomia.core.errors import MalformedInput, ProofInvalid
from gsomia.core.labels import SecurityLabel

KEY = crypto.new_signing_key()
OTHER = crypto.new_signing_key()
AT = datetime(2024, 3, 1, 9, 0, 0, 123456, tzinfo=UTC)

texts = hs.text(alphabet=hs.characters(exclude_categories=["Cs"]), min_size=1, max_size=12)
parties = hs.sampled_from(["JPN", "KOR", "USA", "GBR"])
labels = hs.builds(
    SecurityLabel, originator=parties, level=texts,
    rel_to=hs.frozensets(parties, min_size=1), purpose=texts,
    caveats=hs.frozensets(hs.sampled_from(["NOFORN", "ORCON", "주의"]), max_size=2),
    policy=hs.none() | texts, category=hs.none() | texts,
    created=hs.none() | hs.datetimes(timezones=hs.just(UTC)))


@settings(max_examples=200)
@given(label=labels, other=labels, note=hs.text(max_size=20),
       provider=hs.none() | parties, digest=hs.none() | hs.binary(min_size=32, max_size=32),
       at=hs.datetimes(min_value=datetime(1000, 1, 1), timezones=hs.just(UTC)))
def test_records_hash_the_rfc8785_bytes_of_their_json(label: SecurityLabel,
                                                      other: SecurityLabel, note: str,
                                                      provider: str | None,
                                                      digest: bytes | None,
                                                      at: datetime) -> None:
    assert record_bytes(label.to_json()) == crypto.canonical(label.to_json())
    record = CustodyRecord("indicator--1", "v1", "received", "KOR", label, other, at,
                           provider=provider, agreement="a-1", envelope_digest=digest,
                           note=note)
    assert record.canonical() == crypto.canonical(record.to_json())
    assert record.label_bytes() == (crypto.canonical(label.to_json()),
                                    crypto.canonical(other.to_json()))
    fresh = CustodyRecord("indicator--1", "v1", "received", "KOR", label, other, at,
                          provider=provider, agreement="a-1", envelope_digest=digest,
                          note=note).knowing(crypto.canonical(label.to_json()))
    assert fresh.digest() == record.digest()


@settings(max_examples=100)
@given(keys=hs.lists(hs.tuples(texts, texts, hs.integers(0, 1)), min_size=1, max_size=6),
       shared=hs.tuples(labels, labels), holder=parties,
       at=hs.datetimes(min_value=datetime(1000, 1, 1), timezones=hs.just(UTC)))
def test_a_created_batch_holds_and_hashes_the_records_made_one_by_one(
        keys: list[tuple[str, str, int]], shared: tuple[SecurityLabel, SecurityLabel],
        holder: str, at: datetime) -> None:
    # Two labels at most, so that items share one (the bytes made once per label).
    batch = [(i, v, shared[k]) for i, v, k in keys]
    made = CreatedCustody(holder, at, [(i, v, label, crypto.canonical(label.to_json()))
                                       for i, v, label in batch])
    alone = [CustodyRecord(i, v, "created", holder, label, label, at, agreement=label.policy)
             for i, v, label in batch]
    assert made.records() == alone
    # Against the canonical JSON of each record, not the record's own fast path.
    assert made.digests() == [hashlib.sha256(crypto.canonical(r.to_json())).hexdigest()
                              for r in alone]


@given(at=hs.datetimes(min_value=datetime(1000, 1, 1), timezones=hs.sampled_from(
    [UTC, timezone(timedelta(hours=9)), timezone(timedelta(hours=-5))])))
def test_stamp_is_utc_to_the_microsecond(at: datetime) -> None:
    assert stamp(at) == at.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def test_a_record_that_json_cannot_hold_is_refused_by_name() -> None:
    with pytest.raises(MalformedInput):
        record_bytes({"x": "\ud800"})


@settings(max_examples=50)
@given(label=labels, name=texts, flip=hs.integers(0, 10**6))
def test_binding_checked_from_bytes_agrees_with_crypto(label: SecurityLabel, name: str,
                                                       flip: int) -> None:
    content = {"type": "indicator", "id": "indicator--1", "name": name, "count": 3}
    binding = crypto.bind(label.to_json(), content, KEY)
    label_bytes = crypto.canonical(label.to_json())
    content_bytes = crypto.canonical(content)
    crypto.verify_binding(label.to_json(), content, binding, KEY.public_key())
    verify_binding_bytes(label_bytes, content_bytes, binding, KEY.public_key())
    changed = bytearray(content_bytes)
    changed[flip % len(changed)] ^= 0x01
    with pytest.raises(ProofInvalid, match="changed"):
        verify_binding_bytes(label_bytes, bytes(changed), binding, KEY.public_key())
    with pytest.raises(ProofInvalid, match="names signing key"):
        verify_binding_bytes(label_bytes, content_bytes, binding, OTHER.public_key())


def test_a_stored_item_fixes_object_label_and_binding_in_its_content_hash() -> None:
    label = SecurityLabel("KOR", "군사II급비밀", frozenset({"KOR", "JPN"}), "dprk-missile")
    obj = {"type": "indicator", "id": "indicator--1", "modified": "2024-03-01T00:00:00Z"}
    binding = crypto.bind(label.to_json(), obj, KEY)
    item = StoredItem.of(obj, label, binding, AT)
    assert item.version == "2024-03-01T00:00:00Z"
    assert item.record() == crypto.canonical({"object": obj, "label": label.to_json(),
                                              "binding": binding.to_json()})
    from gsomia.core.audit import content_hash

    assert item.content_hash() == content_hash(item.record())
    same = StoredItem.from_canonical(obj, crypto.canonical(obj), label,
                                     crypto.canonical(label.to_json()), binding, AT)
    assert same == item
    assert item.object() == obj and item.security_label() == label
    assert item.bound() == binding


def test_only_the_originators_key_makes_a_classification_notice_that_verifies() -> None:
    notice = sign_classification_notice(item_id="indicator--1", originator="JPN",
                                        old_level="極秘", new_level="秘", issued_at=AT, key=KEY)
    verify_classification_notice(notice, KEY.public_key())
    assert ClassificationNotice.from_json(notice.to_json()) == notice
    with pytest.raises(ProofInvalid):
        verify_classification_notice(notice, OTHER.public_key())
    forged = ClassificationNotice.from_json({**notice.to_json(), "new_level": "機密"})
    with pytest.raises(ProofInvalid):
        verify_classification_notice(forged, KEY.public_key())


def test_users_keep_a_token_hash_and_listings_leave_it_out() -> None:
    user = NodeUser("kim", "KOR", "군사II급비밀", frozenset({"dprk-missile"}),
                    token_hash("gs_secret"), AT)
    assert token_hash("gs_secret") != token_hash("gs_secreT")
    assert "token_hash" in user.to_json() and "token_hash" not in user.public_json()
    assert user.person().need_to_know == frozenset({"dprk-missile"})
