"""What deciding a connection's partner costs the event loop (``node serve``'s
``CurrentPartners``, then the peer API's ``PinnedPeers`` answer kept for its requests):
a reference revision's peer_identity (``--against REV``, main by default) against this
tree's, side by side in one process: CPU per decision (a new connection's TLS extension
each time), median of 7 alternated rounds, for a partner's certificate (KOR, in force),
the node's own (JPN) and one of no pinned CA's (XYZ); and per request on a kept connection
(the peer API's ``PinnedPeers``, decided again at each request, finalreview28a). Each side's
answer is checked against the other's; timed once the node folder's files have settled
(``gsomia.shell.settled_files``), as a running node's have. On a real node folder
(``create_identity``, partners.json pinning KOR's CA). Not a test, not part of ``python -m bench``:

    PYTHONPATH=src:. python bench/peer_decision_ab.py [--against REV] [--save-as KEY] [N]
"""

from __future__ import annotations

import importlib.util
import json
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from datetime import UTC, datetime
from functools import partial
from pathlib import Path
from types import ModuleType
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import serialization

from gsomia.shell import peer_identity
from gsomia.shell.catalogue import load_catalogue
from gsomia.shell.exchange import Partners, Peer
from gsomia.shell.keys import FileKeyStore, cert_fingerprint, create_identity

ROUNDS = 7


def _reference(rev: str) -> ModuleType:
    """The peer_identity module of revision ``rev``, under a name of its own."""
    root = Path(__file__).resolve().parents[1]
    text = subprocess.run(["git", "-C", str(root), "show",
                           f"{rev}:src/gsomia/shell/peer_identity.py"],
                          check=True, capture_output=True, text=True).stdout
    path = Path(tempfile.mkdtemp(prefix="peer_decision_ab-")) / "reference_peer_identity.py"
    path.write_text(text)
    spec = importlib.util.spec_from_file_location("reference_peer_identity", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    shutil.rmtree(path.parent)  # loaded: the copy is no longer needed
    return module


def _folder(base: Path, now: datetime) -> tuple[Path, dict[str, bytes]]:
    """JPN's node folder pinning KOR (and itself, as ``federation up`` writes it), and the
    client certificates of JPN, KOR and XYZ (a CA JPN pins for nobody)."""
    for code in ("JPN", "KOR", "XYZ"):
        create_identity(base / code, code, now)
    jpn = base / "JPN"
    (jpn / "tls" / "partners").mkdir(exist_ok=True)
    (jpn / "tls" / "partners" / "KOR.crt").write_bytes((base / "KOR/tls/ca.crt").read_bytes())
    peers = {}
    for code in ("JPN", "KOR"):
        keys = FileKeyStore(base / code, code)
        ca = x509.load_pem_x509_certificate((base / code / "tls" / "ca.crt").read_bytes())
        peers[code] = Peer(code, f"https://{code.lower()}.test", keys.public_signing_key(),
                           keys.envelope_key().public_key(), cert_fingerprint(ca))
    Partners("JPN", "direct", peers, ("KOR",)).write(jpn)
    ders = {code: x509.load_pem_x509_certificate(
        (base / code / "tls" / "client.crt").read_bytes()).public_bytes(
            serialization.Encoding.DER) for code in ("JPN", "KOR", "XYZ")}
    return jpn, ders


def _new_connection(decide: Callable[[dict[str, Any]], object], der: bytes) -> object:
    return decide({"client_cert_der": der})  # a new connection's TLS extension


def _cpu_per_call(call: Callable[[], object], n: int) -> float:
    start = time.process_time()
    for _ in range(n):
        call()
    return (time.process_time() - start) / n


def _request(peers: Callable[[dict[str, Any]], object], tls: dict[str, Any]) -> object:
    return peers({"extensions": {"tls": tls}})  # a request on a kept connection


def _settle(folder: Path) -> None:
    """Wait until no file of ``folder`` changed within SETTLED_NS: a running node's CA files
    and partners.json, written at its making, long settled (this tree's stat-cached reads
    trust a stat only then)."""
    from gsomia.shell.settled_files import SETTLED_NS

    files = [p for p in folder.rglob("*") if p.is_file()]
    latest = max(max(p.stat().st_mtime_ns, p.stat().st_ctime_ns) for p in files)
    time.sleep(max(0.0, (SETTLED_NS - (time.time_ns() - latest)) / 1e9) + 0.1)


def run(rev: str = "main", n: int = 300) -> dict[str, Any]:
    reference = _reference(rev)
    catalogue = load_catalogue()
    now = datetime.now(UTC)
    out: dict[str, Any] = {"against": rev, "decisions_per_round": n, "rounds": ROUNDS}
    with tempfile.TemporaryDirectory(prefix="peer_decision_ab-") as tmp:
        jpn, ders = _folder(Path(tmp), now)
        _settle(Path(tmp))
        peers = {side: module.PinnedPeers(jpn, "JPN")
                 for side, module in (("reference", reference), ("this", peer_identity))}
        sides = {side: sys.modules[type(p).__module__].CurrentPartners(p, catalogue)
                 for side, p in peers.items()}
        for holder, der in ders.items():
            answers = {side: decide({"client_cert_der": der})
                       for side, decide in sides.items()}
            assert answers["reference"] == answers["this"], (holder, answers)
            # A new connection's decision (CurrentPartners), then a request's on a kept one
            # (the peer API's PinnedPeers, decided again at each request).
            for what, calls in (("connection", {s: partial(_new_connection, d, der)
                                                for s, d in sides.items()}),
                                ("request", {s: partial(_request, p, {"client_cert_der": der})
                                             for s, p in peers.items()})):
                times: dict[str, list[float]] = {side: [] for side in calls}
                for _ in range(ROUNDS):
                    for side, call in calls.items():
                        times[side].append(_cpu_per_call(call, n))
                ref, this = (statistics.median(times[s]) for s in ("reference", "this"))
                out.setdefault(holder, {"answer": answers["this"]})[what] = {
                    "reference_us": round(ref * 1e6, 1), "this_us": round(this * 1e6, 1),
                    "ratio": round(this / ref, 3)}
    return out


if __name__ == "__main__":
    args = sys.argv[1:]
    rev, key = "main", None
    while args[:1] in (["--against"], ["--save-as"]):
        if args[0] == "--against":
            rev = args[1]
        else:
            key = args[1]
        args = args[2:]
    out = run(rev, int(args[0]) if args else 300)
    print(json.dumps(out, indent=1))
    if key is not None:
        from bench import save_record

        save_record(key, out)
