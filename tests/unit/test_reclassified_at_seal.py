"""The seal refuses a version its originator re-classified after binding it (hunt29):
:func:`gsomia.service.outbox.reclassified_at_seal` over generated notices."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from hypothesis import given, settings
from hypothesis import strategies as st

from gsomia.core.custody import ClassificationNotice, sign_classification_notice
from gsomia.core.labels import SecurityLabel
from gsomia.service.outbox import reclassified_at_seal

KOR, USA = Ed25519PrivateKey.generate(), Ed25519PrivateKey.generate()
T0 = datetime(2026, 11, 1, tzinfo=UTC)
LEVELS = ("군사I급비밀", "군사II급비밀", "군사III급비밀")
ITEM = "indicator--00000000-0000-4000-8000-000000000001"


@settings(max_examples=200, deadline=None)
@given(bound=st.sampled_from(LEVELS),
       notices=st.lists(st.tuples(st.sampled_from(LEVELS), st.integers(0, 50),
                                  st.sampled_from(("KOR", "forged", "other item"))),
                        max_size=5))
def test_a_version_goes_only_at_the_level_of_its_originators_newest_notice(
        bound: str, notices: list[tuple[str, int, str]]) -> None:
    """Refused exactly when a notice of the item held does not verify by KOR's key, or the
    newest (by its time) sets another level than the bound label's; notices of another
    item say nothing of this one."""
    label = SecurityLabel("KOR", bound, frozenset({"KOR", "JPN"}), "dprk-missile")
    held = [sign_classification_notice(
        item_id=ITEM if kind != "other item" else ITEM[:-1] + "2", originator="KOR",
        old_level=bound, new_level=level, issued_at=T0 + timedelta(seconds=at),
        key=USA if kind == "forged" else KOR) for level, at, kind in notices]
    by_item: dict[str, list[ClassificationNotice]] = {}
    for notice in held:
        by_item.setdefault(notice.item_id, []).append(notice)
    refused = reclassified_at_seal([(ITEM, "v1", label)], by_item, {"KOR": KOR.public_key()})
    mine = [(level, at, kind) for level, at, kind in notices if kind != "other item"]
    if any(kind == "forged" for *_, kind in mine):
        assert "does not verify" in refused[(ITEM, "v1")]
    elif mine:
        newest = max(mine, key=lambda n: n[1])
        # Notices issued at the same instant: any of them may be taken as the newest.
        tied = {level for level, at, _ in mine if at == newest[1]}
        if tied == {bound}:
            assert refused == {}
        elif bound not in tied:
            assert "changed its level" in refused[(ITEM, "v1")]
    else:
        assert refused == {}
    # Without the originator's key nothing held can be checked: refused if any is held.
    assert bool(reclassified_at_seal([(ITEM, "v1", label)], by_item, {})) == bool(mine)
