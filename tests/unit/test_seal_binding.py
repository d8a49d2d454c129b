"""The binding the courier checks as it seals (sealsig26):
:func:`gsomia.service.outbox.unbound_at_seal` lets through exactly the versions whose label
and content, as stored, the originator bound with its key; any byte of either rewritten, a
binding forged, or a key this node does not hold for the originator, and the version is
refused with the reason. Pure: real keys and signatures, no store."""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from typing import Any, cast

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from hypothesis import given, settings
from hypothesis import strategies as hs

from counting import Counted
from gsomia.core import crypto
from gsomia.core.custody import record_bytes
from gsomia.service.outbox import unbound_at_seal
from gsomia.service.ports import SignatureChecks, checks_here
from gsomia.shell.signatures import RememberingChecks

KOR, JPN = crypto.new_signing_key(), crypto.new_signing_key()
KEYS = {"KOR": KOR.public_key(), "JPN": JPN.public_key()}
LABEL = {"originator": "KOR", "level": "군사II급비밀", "rel_to": ["JPN", "KOR"],
         "purpose": "dprk-missile", "caveats": []}


def stored(n: int, key: Ed25519PrivateKey = KOR, originator: str = "KOR"
           ) -> tuple[str, str, bytes, bytes, bytes, str]:
    """Item ``n`` as the node stores it: RFC 8785 content and label, the binding's JSON."""
    content = {"type": "indicator", "id": f"indicator--{n}", "name": f"site {n}"}
    label = {**LABEL, "originator": originator}
    binding = crypto.bind(label, content, key)
    return (f"indicator--{n}", "v1", crypto.canonical(content), record_bytes(label),
            crypto.canonical(binding.to_json()), originator)


def refused(rows: Sequence[tuple[str, str, bytes, bytes, bytes, str]],
            checks: SignatureChecks = checks_here) -> dict[tuple[str, str], str]:
    bindings, unbound = unbound_at_seal(rows, KEYS, checks)
    found = unbound()
    assert set(bindings) | set(found) == {(r[0], r[1]) for r in rows}
    return found


def test_bound_versions_pass_own_and_relayed_each_by_its_originators_key() -> None:
    own, relayed = stored(1), stored(2, JPN, "JPN")
    assert refused([own, relayed]) == {}
    # A relay bound by JPN is not KOR's to vouch for, nor the other way round.
    claimed = [(*own[:5], "JPN"), (*relayed[:5], "KOR"), (*own[:5], "USA")]
    found = refused(claimed)
    assert set(found) == {(own[0], "v1"), (relayed[0], "v1")}
    assert "no signing key known for its originator USA" in found[(own[0], "v1")]


def test_a_forged_signature_over_the_right_digest_is_refused_by_the_signature() -> None:
    item_id, version, content, _, binding, who = stored(3)
    forged = crypto.Binding.from_json(binding)
    wider = record_bytes({**LABEL, "rel_to": ["JPN", "KOR", "USA"]})
    # The digest of the rewritten label, with a signature over something else.
    forged_json = crypto.canonical({**forged.to_json(),
                                    "digest": crypto.b64u(crypto.binding_digest_of(wider,
                                                                                   content))})
    found = refused([(item_id, version, content, wider, forged_json, who), stored(4)])
    assert found == {(item_id, version): "its binding does not verify: "
                                          + crypto.BINDING_SIGNATURE_FAILS}


def test_an_answer_that_does_not_add_up_verifies_nothing() -> None:
    class Short:
        def submit(self, checks: Sequence[object]) -> Callable[[], list[bool]]:
            return lambda: [True] * (len(checks) - 1)

    rows = [stored(5), stored(6)]
    assert set(refused(rows, Short())) == {(r[0], r[1]) for r in rows}


def test_a_label_or_content_retyped_on_disk_is_refused_not_raised() -> None:
    """review26: SQLite keeps a text written into a blob column, and the store reads it back
    as text; hashed as it was, it raised out of the seal at every pass, and the link's rows
    behind it waited for ever. Refused with the reason, the version beside it bound."""
    label_text, content_text, beside = stored(15), stored(16), stored(17)
    rows = [(*label_text[:3], label_text[3].decode(), *label_text[4:]),
            (*content_text[:2], content_text[2].decode(), *content_text[3:]), beside]
    # What the store hands back typed as bytes, and is text: the seal must not trust the type.
    found = refused(cast("list[tuple[str, str, bytes, bytes, bytes, str]]", rows))
    assert set(found) == {(label_text[0], "v1"), (content_text[0], "v1")}
    assert all("its stored label or content is not bytes" in why for why in found.values())


@settings(max_examples=60, deadline=None)
@given(which=hs.sampled_from([2, 3, 4]), at=hs.integers(0, 10_000), byte=hs.integers(0, 255))
def test_any_byte_of_label_content_or_binding_rewritten_is_refused(
        which: int, at: int, byte: int) -> None:
    """Security invariant: a version whose stored content, label or binding differs in any
    byte from what the originator bound is refused; the untouched version beside it is not."""
    row: list[Any] = list(stored(7))
    beside = stored(8)
    value = bytearray(row[which])
    at %= len(value)
    if value[at] == byte:
        byte = (byte + 1) % 256
    value[at] = byte
    row[which] = bytes(value)
    assert set(refused([(*row,), beside])) == {(row[0], "v1")}


def test_a_yes_is_remembered_and_nothing_else() -> None:
    """A version sealed to a second partner is not verified again; a no, or the same
    binding over bytes rewritten since, is checked anew (and still fails)."""
    counted = Counted()
    remembered = RememberingChecks(counted, keep=2)
    good, bad = stored(9), stored(10)
    bad = (*bad[:3], record_bytes({**LABEL, "rel_to": ["JPN", "KOR", "USA"]}), *bad[4:])
    forged = crypto.canonical({**json.loads(good[4]), "digest": crypto.b64u(
        crypto.binding_digest_of(bad[3], good[2]))})
    forged_row = (*good[:3], bad[3], forged, "KOR")
    for _ in range(2):
        assert refused([good], remembered) == {}
        assert counted.made == 1
    for n in (2, 3):
        assert set(refused([forged_row], remembered)) == {(good[0], "v1")}
        assert counted.made == n
    # Kept only ``keep``: the oldest yes is checked again once others came after it.
    assert refused([stored(11), stored(12)], remembered) == {}
    assert counted.made == 5
    assert refused([good], remembered) == {}
    assert counted.made == 6


def test_a_short_answer_remembers_nothing() -> None:
    class Short(Counted):
        def submit(self, checks: Sequence[crypto.SignatureCheck]
                   ) -> Callable[[], list[bool]]:
            self.made += len(checks)
            return lambda: [True] * (len(checks) - 1)

    short = Short()
    remembered = RememberingChecks(short)
    rows = [stored(13), stored(14)]
    for n in (2, 4):
        assert set(refused(rows, remembered)) == {(r[0], r[1]) for r in rows}
        assert short.made == n


def test_half_here_half_on_the_worker_each_half_checked_into_one_keeping() -> None:
    """A batch split between the worker and this process: a forgery in either half is
    refused, and what either said yes to is not checked again by the other."""
    worker, here = Counted(), Counted()
    remembered = RememberingChecks(worker)
    beside = RememberingChecks(here, _like=remembered)
    rows = [stored(n) for n in range(20, 26)]
    wider = record_bytes({**LABEL, "rel_to": ["JPN", "KOR", "USA"]})
    for k in (0, 5):  # one in each half
        forged = crypto.canonical({**json.loads(rows[k][4]), "digest": crypto.b64u(
            crypto.binding_digest_of(wider, rows[k][2]))})
        rows[k] = (*rows[k][:3], wider, forged, "KOR")
    bindings, unbound = unbound_at_seal(rows, KEYS, remembered, beside)
    assert set(unbound()) == {(rows[0][0], "v1"), (rows[5][0], "v1")}
    assert (worker.made, here.made) == (3, 3)
    _, again = unbound_at_seal(rows, KEYS, beside, remembered)
    assert set(again()) == {(rows[0][0], "v1"), (rows[5][0], "v1")}
    assert worker.made + here.made == 8  # only the two forgeries, checked anew
    assert set(bindings) == {(r[0], "v1") for r in rows}
    assert remembered.here.submit([])() == []


def test_a_binding_vouched_for_is_found_over_the_bytes_signed_and_nothing_else() -> None:
    """sealfast26: what the publish path signed is kept as a yes (``vouch``) and the seal
    finds it; the same signature under a binding made to match a rewritten label is not
    found, and fails; the keeping stays bounded."""
    counted = Counted()
    remembered = RememberingChecks(counted, keep=2)
    rows = [stored(n) for n in (30, 31, 32)]

    def made(row: tuple[str, str, bytes, bytes, bytes, str]) -> crypto.SignatureCheck:
        return crypto.binding_check(row[3], row[2], crypto.Binding.from_json(row[4]),
                                    KEYS["KOR"])

    remembered.vouch([made(rows[0])])
    assert refused([rows[0]], remembered) == {}
    assert counted.made == 0
    wider = record_bytes({**LABEL, "rel_to": ["JPN", "KOR", "USA"]})
    forged = crypto.canonical({**json.loads(rows[0][4]), "digest": crypto.b64u(
        crypto.binding_digest_of(wider, rows[0][2]))})
    assert set(refused([(*rows[0][:3], wider, forged, "KOR")], remembered)) == {
        (rows[0][0], "v1")}
    assert counted.made == 1
    remembered.vouch([made(rows[1]), made(rows[2])])  # keep=2: the first is let go
    assert refused(rows, remembered) == {}
    assert counted.made == 2
