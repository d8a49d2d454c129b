"""The files that decide whom a node trusts (``partners.json``, the pinned CA files) are read
through :class:`gsomia.shell.settled_files.SettledFiles` (pinned29): an unchanged file is not
read again at each peer request, and a file changed too recently for its stat to tell is,
so a CA file swapped for another of the same size and times is seen at the next request
(finalreview28a made every request read them to be sure of that)."""

from __future__ import annotations

import base64
import json
import os
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.x509.oid import ExtendedKeyUsageOID
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from gsomia.shell import settled_files
from gsomia.shell.keys import _certificate, _name, cert_fingerprint
from gsomia.shell.peer_identity import PeerRefused, PinnedPeers
from gsomia.shell.settled_files import SettledFiles

NOW = datetime(2026, 12, 1, tzinfo=UTC)


def _same_size_cas() -> dict[str, tuple[object, x509.Certificate]]:
    """KOR's and USA's CAs, their PEMs of one size (ECDSA signatures vary by a byte or two:
    drawn again until they match), so a swap of one for the other keeps the file's size."""
    from cryptography.hazmat.primitives.asymmetric import ec

    def ca(code: str) -> tuple[object, x509.Certificate]:
        key = ec.generate_private_key(ec.SECP256R1())
        name = _name(code, "node CA")
        return key, _certificate(name, key.public_key(), name, key, NOW, ca=True, usage=None,
                                 issuer_public=key.public_key())

    def pem(c: tuple[object, x509.Certificate]) -> bytes:
        return c[1].public_bytes(serialization.Encoding.PEM)

    kor = ca("KOR")
    while True:
        usa = ca("USA")
        if len(pem(usa)) == len(pem(kor)):
            return {"KOR": kor, "USA": usa, "JPN": ca("JPN")}


CAS = _same_size_cas()


def _pem(code: str) -> bytes:
    return CAS[code][1].public_bytes(serialization.Encoding.PEM)


def _leaf(issuer: str) -> bytes:
    from cryptography.hazmat.primitives.asymmetric import ec

    key, ca = CAS[issuer]
    cert = _certificate(_name(issuer, "node client"), ec.generate_private_key(
        ec.SECP256R1()).public_key(), ca.subject, key, NOW, ca=False,
        usage=[ExtendedKeyUsageOID.CLIENT_AUTH], issuer_public=ca.public_key())
    return cert.public_bytes(serialization.Encoding.DER)


KOR_LEAF = _leaf("KOR")


def _jpn(folder: Path) -> Path:
    """JPN's node folder pinning KOR's CA (the file tls/partners/KOR.crt)."""
    (folder / "tls" / "partners").mkdir(parents=True)
    (folder / "tls" / "ca.crt").write_bytes(_pem("JPN"))
    (folder / "tls" / "partners" / "KOR.crt").write_bytes(_pem("KOR"))
    raw = base64.urlsafe_b64encode(bytes(32)).rstrip(b"=").decode()
    (folder / "partners.json").write_text(json.dumps(
        {"party": "JPN", "topology": "direct", "deliver_to": ["KOR"],
         "parties": {p: {"url": f"https://127.0.0.1:{i + 1}", "signing_public": raw,
                         "envelope_public": raw, "tls_ca_sha256": cert_fingerprint(CAS[p][1])}
                     for i, p in enumerate(("JPN", "KOR"))}}))
    return folder


def _swap_in_place(path: Path, data: bytes) -> None:
    """``path`` (same inode) given ``data`` of its size, its times put back: what a stat sees
    of two writes within one tick of a coarse clock, or within a FAT file system's 2 s."""
    was = path.stat()
    assert len(data) == was.st_size
    with open(path, "r+b") as f:
        f.write(data)
    os.utime(path, ns=(was.st_atime_ns, was.st_mtime_ns))


@contextmanager
def _frozen_stat(paths: set[str]) -> Iterator[None]:
    """``os.stat`` of ``paths`` answers what it answered as this began: a file system whose
    times did not move (this kernel's multigrain times change the change time at once, which
    a coarse clock's, NFS's or FAT's do not)."""
    real = os.stat
    frozen = {p: real(p) for p in paths}

    def stat(path: object, *args: object, **kwargs: object) -> os.stat_result:
        found = frozen.get(os.fspath(path)) if isinstance(path, str | Path) else None
        return found if found is not None else real(path, *args, **kwargs)  # type: ignore[arg-type]

    os.stat = stat
    try:
        yield
    finally:
        os.stat = real


def _settle(*paths: Path) -> None:
    """Wait until every file of ``paths`` has settled (unchanged for SETTLED_NS)."""
    while True:
        latest = max(max(p.stat().st_mtime_ns, p.stat().st_ctime_ns) for p in paths)
        left = settled_files.SETTLED_NS - (time.time_ns() - latest)
        if left < 0:
            return
        time.sleep(left / 1e9 + 0.05)


def test_a_ca_swapped_within_the_settled_time_under_the_same_stat_is_seen_at_once(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """KOR's CA file is swapped for USA's (same size, inode and times as a stat sees them):
    KOR's certificate is refused at the next request. A cache that trusted the stat alone
    (settled at once) keeps the old yes: the check below fails for it."""
    # Wide, so a stalled machine does not let the file settle before the request.
    monkeypatch.setattr(settled_files, "SETTLED_NS", 60_000_000_000)
    for stat_alone in (False, True):
        folder = _jpn(tmp_path / f"jpn-{stat_alone}")
        kor = folder / "tls" / "partners" / "KOR.crt"
        if stat_alone:  # every read taken as settled: the stat alone trusted
            monkeypatch.setattr(settled_files, "SETTLED_NS", -10**18)
        peers = PinnedPeers(folder, "JPN", clock=lambda: NOW)
        assert peers.party_of(KOR_LEAF, NOW) == "KOR"
        with _frozen_stat({str(kor)}):
            _swap_in_place(kor, _pem("USA"))
            found = peers.party_of(KOR_LEAF, NOW)
        if stat_alone:  # the same swap, missed by a cache trusting the stat
            assert found == "KOR"
        else:
            assert isinstance(found, PeerRefused), found
            assert "KOR" not in peers.pinned()


def test_unchanged_files_are_not_read_again_once_settled(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Settled and unchanged, neither partners.json nor a CA file is read at a request; the
    first change after is read at the next one."""
    folder = _jpn(tmp_path / "jpn")
    files = [folder / "partners.json", folder / "tls" / "ca.crt",
             folder / "tls" / "partners" / "KOR.crt"]
    reads: list[str] = []
    real = Path.read_bytes

    def counted(path: Path) -> bytes:
        reads.append(str(path))
        return real(path)

    monkeypatch.setattr(Path, "read_bytes", counted)
    peers = PinnedPeers(folder, "JPN", clock=lambda: NOW)
    assert peers.party_of(KOR_LEAF, NOW) == "KOR"
    _settle(*files)
    peers.party_of(KOR_LEAF, NOW)  # the stats of the settled files kept
    reads.clear()
    for _ in range(50):
        assert peers({"extensions": {"tls": {"client_cert_der": KOR_LEAF}}}) == "KOR"
    assert reads == []
    kor = files[2]
    kor.write_bytes(_pem("USA"))  # a change: its change time moves
    assert isinstance(peers.party_of(KOR_LEAF, NOW), PeerRefused)
    assert reads == [str(kor)]


@settings(max_examples=60, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(writes=st.lists(st.binary(min_size=8, max_size=8), min_size=1, max_size=6),
       frozen=st.booleans())
def test_a_file_read_is_what_the_file_holds_whatever_its_stat_says(
        tmp_path: Path, writes: list[bytes], frozen: bool) -> None:
    """Every read of a file changed within the settled time gives its bytes as they are,
    its stat moving or not (``frozen``: not at all, as on a coarse clock)."""
    path = tmp_path / f"f{len(os.listdir(tmp_path))}"
    path.write_bytes(b"00000000")
    files = SettledFiles()
    assert files.read(path) == b"00000000"
    settled = settled_files.SETTLED_NS
    # Wide, so a stalled machine does not let the file settle within an example.
    settled_files.SETTLED_NS = 60_000_000_000
    try:
        with _frozen_stat({str(path)} if frozen else set()):
            for data in writes:
                _swap_in_place(path, data)
                assert files.read(path) == data
                assert files.read(path) == data
    finally:
        settled_files.SETTLED_NS = settled


def test_a_swap_unseen_until_the_file_settles_is_read_once_it_has(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """secreview29: KOR's CA file is read while it is fresh (kept, unsettled), swapped for
    USA's under the same stat, and no request comes until the settled time has passed. The
    bytes kept were read before the swap: the cache may trust them only if the file had
    settled when they were read (racy git's rule), not because it has settled by the time
    of the ask. Trusting them kept the old CA's yes for as long as the stat held still."""
    monkeypatch.setattr(settled_files, "SETTLED_NS", 60_000_000_000)
    folder = _jpn(tmp_path / "jpn")
    kor = folder / "tls" / "partners" / "KOR.crt"
    peers = PinnedPeers(folder, "JPN", clock=lambda: NOW)
    assert peers.party_of(KOR_LEAF, NOW) == "KOR"  # read fresh: kept, not yet trusted
    with _frozen_stat({str(kor)}):
        _swap_in_place(kor, _pem("USA"))
        # The next ask comes once the file looks settled (the clock moved past the
        # settled time; nothing asked in between).
        later = time.time_ns() + 2 * settled_files.SETTLED_NS
        monkeypatch.setattr(time, "time_ns", lambda: later)
        found = peers.party_of(KOR_LEAF, NOW)
    assert isinstance(found, PeerRefused), found
    assert "KOR" not in peers.pinned()


class _CoarseStat:
    """What a stat of a file system with a clock of SETTLED_NS's tick (FAT's 2 s) says:
    its times are the tick of the last write, whatever happened within it."""

    def __init__(self, real: os.stat_result, written_ns: int) -> None:
        tick = settled_files.SETTLED_NS
        self.st_dev, self.st_ino, self.st_size = real.st_dev, real.st_ino, real.st_size
        self.st_mtime_ns = self.st_ctime_ns = written_ns // tick * tick


@settings(max_examples=80, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(steps=st.lists(st.tuples(st.integers(min_value=0, max_value=3 * 8),
                                st.binary(min_size=8, max_size=8),
                                st.integers(min_value=0, max_value=3 * 8), st.booleans()),
                      min_size=1, max_size=8))
def test_whatever_is_asked_when_the_bytes_given_are_the_files(
        tmp_path: Path, steps: list[tuple[int, bytes, int, bool]]) -> None:
    """Invariant (secreview29): on a file system whose times move by SETTLED_NS's tick, any
    sequence of same-size rewrites, each asked for or not, the clock moved on by any
    eighths of the settled time before and after each, gives at every ask the bytes the
    file holds."""
    path = tmp_path / f"f{len(os.listdir(tmp_path))}"
    path.write_bytes(b"00000000")
    files = SettledFiles()
    eighth = settled_files.SETTLED_NS // 8
    clock = [10**18]
    written = [clock[0]]
    real_stat, real_ns = os.stat, time.time_ns

    def stat(p: str, *args: object, **kwargs: object) -> object:
        found = real_stat(p, *args, **kwargs)  # type: ignore[arg-type]
        return _CoarseStat(found, written[0]) if p == str(path) else found

    os.stat = stat  # type: ignore[assignment]
    time.time_ns = lambda: clock[0]
    try:
        assert files.read(path) == b"00000000"
        for before, data, after, asked in steps:
            clock[0] += before * eighth
            with open(path, "r+b") as f:
                f.write(data)
            written[0] = clock[0]
            clock[0] += after * eighth
            if asked:
                assert files.read(path) == data
        for _ in range(2):
            clock[0] += 3 * settled_files.SETTLED_NS
            assert files.read(path) == path.read_bytes()
    finally:
        os.stat = real_stat
        time.time_ns = real_ns
