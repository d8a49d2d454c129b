"""The process that signs a TAXII server's label bindings (``gsomia.shell.binding_signer``),
on a key file as ``node init`` writes it: what it signs verifies under the node's key, in
the order asked, whatever batches are interleaved or abandoned; it signs only binding
digests; and it refuses a key file the group or others may read, or another key."""

from __future__ import annotations

import contextlib
import os
import signal
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from gsomia.core import crypto
from gsomia.core.errors import ProofInvalid, Unavailable
from gsomia.shell.binding_signer import SigningProcess
from gsomia.shell.keys import write_private

KEY = Ed25519PrivateKey.generate()
PUBLIC = KEY.public_key()


def _pem(key: Ed25519PrivateKey) -> bytes:
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                             serialization.NoEncryption())


@pytest.fixture(scope="module")
def signer(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SigningProcess]:
    path = tmp_path_factory.mktemp("signer") / "keys" / "signing.key"
    write_private(path, _pem(KEY))
    process = SigningProcess(path, crypto.fingerprint(PUBLIC))
    try:
        yield process
    finally:
        process.close()


def _verifies(digest: bytes, signature: bytes) -> bool:
    try:
        crypto.verify(PUBLIC, signature, crypto.signed_message(crypto.BINDING_CONTEXT, digest))
    except ProofInvalid:
        return False
    return True


@settings(max_examples=25, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(batches=st.lists(st.tuples(st.lists(st.binary(min_size=32, max_size=32), max_size=30),
                                  st.booleans()), min_size=1, max_size=6),
       order=st.randoms(use_true_random=False))
def test_each_batch_gets_the_signatures_of_its_own_digests_in_order(
        signer: SigningProcess, batches: list[tuple[list[bytes], bool]], order: object
        ) -> None:
    """Batches begun together and taken in any order, some abandoned (refused before they
    took their signatures): each taken one gets one signature per digest, in its order,
    each a binding signature under the node's key (and no other message's)."""
    pending = [(digests, abandon, signer.begin(digests)) for digests, abandon in batches]
    order.shuffle(pending)  # type: ignore[attr-defined]
    for digests, abandon, chunk in pending:
        if abandon:
            chunk.abandon()
            continue
        signatures = chunk.result()
        assert len(signatures) == len(digests)
        for digest, signature in zip(digests, signatures, strict=True):
            assert _verifies(digest, signature)
            with pytest.raises(ProofInvalid):  # a binding signature signs nothing else
                crypto.verify(PUBLIC, signature, crypto.signed_message(b"gsomia/tree-head",
                                                                       digest))


@settings(max_examples=8, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(batches=st.lists(st.tuples(st.integers(1, 400), st.booleans()), max_size=12))
@example(batches=[(200, True)] * 20)  # 4,000 signatures nobody takes: both pipes fill
def test_batches_that_take_no_signatures_never_stall_the_ones_after_them(
        signer: SigningProcess, batches: list[tuple[int, bool]]) -> None:
    """Batches one after another, each taken or abandoned (all its objects held already, or
    refused): however many signatures go untaken, the next batch is signed, by the same
    process (nothing ended it), within the answer timeout, never blocked on a full pipe."""
    done: list[bool] = []

    def run() -> None:
        first = None
        for n, (count, abandon) in enumerate([*batches, (3, False)]):
            digests = [bytes([n % 256, k % 256]) * 16 for k in range(count)]
            chunk = signer.begin(digests)
            first = first if first is not None else signer.pid
            if abandon:
                chunk.abandon()
                continue
            signatures = chunk.result()
            assert [_verifies(d, s) for d, s in zip(digests, signatures, strict=True)] \
                == [True] * count
        assert signer.pid == first
        done.append(True)

    worker = threading.Thread(target=run, daemon=True)
    worker.start()
    worker.join(20)
    assert done == [True]


def test_a_dead_process_fails_the_batches_waiting_on_it_and_the_next_starts_anew(
        signer: SigningProcess) -> None:
    signer.begin([b"\1" * 32]).result()  # up
    first = signer.pid
    assert first is not None
    os.kill(first, signal.SIGSTOP)
    waiting = signer.begin([b"\2" * 32] * 3)
    os.kill(first, signal.SIGKILL)
    with pytest.raises(Unavailable, match="signing process"):
        waiting.result()
    later = signer.begin([b"\3" * 32])
    assert signer.pid != first
    assert _verifies(b"\3" * 32, later.result()[0])


def _writing_to_a_stopped_signer(signer: SigningProcess
                                 ) -> tuple[int, threading.Thread, list[object]]:
    """Start ``signer``, stop its process (SIGSTOP) and begin a batch of 4,000 digests on a
    thread (more than a pipe holds, so the write waits): the stopped pid, the thread, and
    what the write came to ("written" or the Unavailable it raised), once it returns."""
    signer.begin([b"\1" * 32]).result()  # up
    stopped = signer.pid
    assert stopped is not None
    os.kill(stopped, signal.SIGSTOP)
    outcome: list[object] = []

    def post() -> None:
        try:
            signer.begin([b"\2" * 32] * 4000)
            outcome.append("written")
        except Unavailable as exc:
            outcome.append(exc)

    thread = threading.Thread(target=post, daemon=True)
    thread.start()
    return stopped, thread, outcome


def _resume(pid: int | None) -> None:
    if pid is not None:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGCONT)


def test_a_stuck_process_refuses_the_batch_in_bounded_time_and_the_next_starts_anew(
        tmp_path: Path) -> None:
    """A signing process that stops reading (stopped, wedged) fills its input pipe: the
    batch written to it is refused with Unavailable (a 503) after the answer timeout, never
    holding the request thread, and every batch behind it, for ever."""
    path = tmp_path / "keys" / "signing.key"
    write_private(path, _pem(KEY))
    stuck = SigningProcess(path, crypto.fingerprint(PUBLIC), answer_timeout=0.5)
    first = None
    try:
        first, thread, outcome = _writing_to_a_stopped_signer(stuck)
        thread.join(15)
        assert not thread.is_alive(), "the write to a stuck signer never returned"
        assert len(outcome) == 1 and isinstance(outcome[0], Unavailable)
        later = stuck.begin([b"\3" * 32])
        assert stuck.pid != first
        assert _verifies(b"\3" * 32, later.result()[0])
    finally:
        _resume(first)
        stuck.close()


def test_a_write_cut_off_by_the_process_ending_never_reaches_what_reuses_its_descriptor(
        tmp_path: Path) -> None:
    """A reader's timeout (or close) ends the process and closes its input pipe while a
    batch is still being written to it; the descriptor's number is then free, and the next
    file or socket any thread opens takes it. The rest of the frame must go nowhere (the
    batch refused), not into that file: the writer holds a descriptor of its own. Here the
    number is taken over by a file with dup2, as that next open would."""
    path = tmp_path / "keys" / "signing.key"
    write_private(path, _pem(KEY))
    signer = SigningProcess(path, crypto.fingerprint(PUBLIC), answer_timeout=10)
    victim = tmp_path / "victim"
    victim_fd = os.open(victim, os.O_WRONLY | os.O_CREAT, 0o600)
    first = None
    try:
        first, thread, outcome = _writing_to_a_stopped_signer(signer)
        thread.join(0.5)
        assert thread.is_alive(), "the write should wait on the full pipe"
        stdin = signer._proc.stdin  # type: ignore[union-attr]
        assert stdin is not None
        os.dup2(victim_fd, stdin.fileno())  # its number now names another file
        os.kill(first, signal.SIGKILL)  # the pipe's reader gone: the waiting write wakes
        thread.join(15)
        assert not thread.is_alive()
        assert len(outcome) == 1 and isinstance(outcome[0], Unavailable)
        assert victim.stat().st_size == 0, "the frame's rest went into another file"
    finally:
        os.close(victim_fd)
        _resume(first)
        signer.close()


@pytest.mark.parametrize(("mode", "other_key", "why"), [
    (0o640, False, "did not start"), (0o604, False, "did not start"),
    (0o600, True, "another key")])
def test_a_key_file_others_may_read_or_holding_another_key_is_not_used(
        tmp_path: Path, mode: int, other_key: bool, why: str) -> None:
    path = tmp_path / "signing.key"
    write_private(path, _pem(Ed25519PrivateKey.generate() if other_key else KEY))
    path.chmod(mode)
    process = SigningProcess(path, crypto.fingerprint(PUBLIC))
    try:
        with pytest.raises(Unavailable, match=why):
            process.begin([b"\0" * 32])
    finally:
        process.close()


def test_the_signing_process_runs_gsomia_whatever_the_folder_it_starts_in(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The server's working folder may be one others write (the host's disk): a ``gsomia``
    package planted there is not what reads the signing key file."""
    path = tmp_path / "keys" / "signing.key"
    write_private(path, _pem(KEY))
    planted = tmp_path / "cwd" / "gsomia"
    planted.mkdir(parents=True)
    marker = tmp_path / "stolen"
    (planted / "__init__.py").write_text(
        f"open({str(marker)!r}, 'w').write('ran')\nraise SystemExit(3)\n")
    monkeypatch.chdir(planted.parent)
    process = SigningProcess(path, crypto.fingerprint(PUBLIC))
    try:
        assert _verifies(b"\4" * 32, process.begin([b"\4" * 32]).result()[0])
    finally:
        process.close()
    assert not marker.exists()


def test_batches_refused_before_they_took_their_signatures_never_stall_the_next(
        tmp_path: Path) -> None:
    """A publisher may re-post versions already held (or items it may not add) again and
    again: their batches are refused after their digests went to the process. The
    signatures nobody takes must not fill the pipes until every later batch hangs."""
    import threading

    path = tmp_path / "keys" / "signing.key"
    write_private(path, _pem(KEY))
    process = SigningProcess(path, crypto.fingerprint(PUBLIC))
    got: list[bytes] = []

    def publishes() -> None:
        for n in range(120):  # 3,000 signatures: more than both pipes hold
            process.begin([n.to_bytes(32, "big")] * 25).abandon()
        got.extend(process.begin([b"\5" * 32]).result())

    try:
        later = threading.Thread(target=publishes, daemon=True)
        later.start()
        later.join(timeout=20)
        assert not later.is_alive(), "batches hang on the signing process"
        assert len(got) == 1 and _verifies(b"\5" * 32, got[0])
    finally:
        process.close()  # ends a process that stalled, and with it the thread


def test_a_batch_is_signed_when_the_pipes_are_numbered_above_1024(tmp_path: Path) -> None:
    """A node with many sockets open gives its signer's pipes descriptors above 1024,
    which select() refuses (ValueError): every TAXII batch would then be refused."""
    import resource

    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    # Raised for this test (a hard limit too, as make test runs as root), never skipped.
    wanted = 1100
    raised_hard = hard if hard == resource.RLIM_INFINITY or hard >= wanted else wanted
    try:
        resource.setrlimit(resource.RLIMIT_NOFILE, (wanted, raised_hard))
    except (ValueError, OSError) as exc:
        pytest.fail(f"cannot raise the descriptor limit ({soft}/{hard}) to {wanted}: {exc}; "
                    f"run the tests as root (as make test does) or after `ulimit -n {wanted}`")
    path = tmp_path / "keys" / "signing.key"
    write_private(path, _pem(KEY))
    taken: list[int] = []
    process = None
    try:
        while not taken or taken[-1] < 1030:  # the lowest free descriptors, taken
            taken.append(os.open(os.devnull, os.O_RDONLY))
        process = SigningProcess(path, crypto.fingerprint(PUBLIC))
        digests = [bytes([n]) * 32 for n in range(3)]
        signatures = process.begin(digests).result()
        proc = process._proc
        assert proc is not None and proc.stdout is not None and proc.stdout.fileno() > 1024
        assert [_verifies(d, s) for d, s in zip(digests, signatures, strict=True)] \
            == [True] * 3
    finally:
        if process is not None:
            process.close()
        for fd in taken:
            os.close(fd)
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))
