"""``partners.json`` is read through a cache keyed by the file's stat (issue 11): whatever
way the file is rewritten, the next load says what the file now says, so a node never
delivers by a partners list it no longer has."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from gsomia.shell import settled_files
from gsomia.shell.exchange import PARTNERS_FILE, Partners, Peer

PEERS = {code: Peer(code, f"https://{code.lower()}.example:8443",
                    Ed25519PrivateKey.generate().public_key(),
                    X25519PrivateKey.generate().public_key())
         for code in ("JPN", "KOR", "USA")}
# Lists of one length: every rewrite keeps the file's size, the case a stat can miss.
ROUTES = (("KOR",), ("USA",))


def _loaded(folder: Path) -> Partners:
    """The partners file in ``folder``, which the test has just written."""
    found = Partners.load(folder)
    assert found is not None, folder
    return found


def _partners(deliver_to: tuple[str, ...]) -> Partners:
    return Partners("JPN", "mesh", PEERS, deliver_to)


def _rewrite_in_place(folder: Path, deliver_to: tuple[str, ...]) -> int:
    """The same file (same inode) given new bytes, as an editor saving in place does; the
    file's size."""
    data = (json.dumps(_partners(deliver_to).to_json(), indent=2, sort_keys=True) + "\n"
            ).encode("utf-8")
    with open(folder / PARTNERS_FILE, "r+b") as f:
        f.write(data)
        f.truncate()
    return len(data)


@settings(max_examples=40, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(steps=st.lists(st.sampled_from(ROUTES), min_size=1, max_size=8))
def test_a_rewrite_in_place_of_the_same_size_is_seen_at_once(tmp_path: Path,
                                                             steps: list[tuple[str, ...]]
                                                             ) -> None:
    # Rewrites a clock tick apart or less share size and times: only the bytes tell them
    # apart, and the cache must not answer from the stat alone then.
    folder = tmp_path / f"n{len(os.listdir(tmp_path))}"
    folder.mkdir()
    _partners(ROUTES[0]).write(folder)
    size = os.path.getsize(folder / PARTNERS_FILE)
    assert _loaded(folder).deliver_to == ROUTES[0]
    for route in steps:
        assert _rewrite_in_place(folder, route) == size
        assert _loaded(folder).deliver_to == route


def test_a_settled_file_is_read_again_once_it_changes(tmp_path: Path,
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    # Every file counts as settled: the stat alone decides whether it is read again.
    monkeypatch.setattr(settled_files, "SETTLED_NS", -10**18)
    _partners(("KOR",)).write(tmp_path)
    assert _loaded(tmp_path).deliver_to == ("KOR",)
    _partners(("KOR", "USA")).write(tmp_path)  # replaced: a new inode, another size
    assert _loaded(tmp_path).deliver_to == ("KOR", "USA")
    (tmp_path / PARTNERS_FILE).unlink()
    assert Partners.load(tmp_path) is None
    _partners(("USA",)).write(tmp_path)
    assert _loaded(tmp_path).deliver_to == ("USA",)
    os.utime(tmp_path / PARTNERS_FILE, ns=(0, 0))  # a change of times alone: read again
    (tmp_path / PARTNERS_FILE).write_text("{}", "utf-8")
    with pytest.raises(Exception, match="not a partners document"):
        Partners.load(tmp_path)
