"""Server CPU per object of a TAXII ingest, in this process: the TAXII service and the node's
store without HTTP (``TaxiiService.add``, as the API calls it), so that a change to the
publish path can be compared in seconds rather than by ``python -m bench taxii``'s minutes.
Not a test, not part of ``python -m bench``: run it by hand, once per tree, in turn.

    python bench/taxii_ingest_cpu.py [--rounds 11] [--per-round 500] [--profile OUT.prof]
                                     [--sign-apart]

One JPN node in a temporary folder, ``bench_taxii``'s indicators and label, envelopes of 100
objects plus their marking. Prints the CPU (``time.process_time``: disk syncs are not
counted) per object of each round, and the minimum and median without the first round
(which pays for imports and compiled schemas). ``--sign-apart``: the bindings are signed on
a process of their own, as ``gsomia node serve`` signs them; its CPU is printed apart.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.bench_taxii import BATCH, _gsomia_node, _indicator


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=11)
    parser.add_argument("--per-round", type=int, default=500)
    parser.add_argument("--profile", help="write a cProfile of the rounds after the first")
    parser.add_argument("--sign-apart", action="store_true",
                        help="sign the bindings on a process of their own (as node serve)")
    args = parser.parse_args()

    import cProfile

    from gsomia.bootstrap import collection_id, open_node, taxii_service
    from gsomia.core.taxii import TAXII_MEDIA

    with tempfile.TemporaryDirectory(prefix="gsomia-ingest-cpu-") as tmp:
        folder = Path(tmp) / "jpn"
        token, marking = _gsomia_node(folder)
        node = open_node(folder)
        service, store = taxii_service(node, sign_apart=args.sign_apart)
        person = service.authenticate(token, "bench")
        assert person is not None
        profile = cProfile.Profile() if args.profile else None
        spent: list[float] = []
        apart: list[float] = []
        try:
            for r in range(args.rounds):
                objs = [{**_indicator(n, f"round-{r}"), "object_marking_refs": [marking["id"]]}
                        for n in range(args.per_round)]
                started = time.process_time()
                signer_started = _signer_cpu(store.signer)
                if profile is not None and r:
                    profile.enable()
                for i in range(0, len(objs), BATCH):
                    status = service.add(person, collection_id("JPN"),
                                         {"objects": [marking, *objs[i:i + BATCH]]},
                                         TAXII_MEDIA, datetime.now(UTC), str(uuid.uuid4()))
                    assert status["failure_count"] == 0, status["failures"]
                if profile is not None:
                    profile.disable()
                spent.append((time.process_time() - started) / len(objs) * 1e6)
                apart.append((_signer_cpu(store.signer) - signer_started) / len(objs) * 1e6)
        finally:
            store.close()
            node.close()
    if profile is not None:
        profile.dump_stats(args.profile)
    rest = sorted(spent[1:]) or spent
    print(f"CPU per object: minimum {rest[0]:.0f} µs, median {rest[len(rest) // 2]:.0f} µs "
          f"(rounds: {', '.join(f'{s:.0f}' for s in spent)})")
    if args.sign_apart:
        rest = sorted(apart[1:]) or apart
        print(f"CPU per object of the signing process: median {rest[len(rest) // 2]:.0f} µs")
    return 0


def _signer_cpu(signer: object) -> float:
    """CPU seconds of the signing process so far (0 before it starts, or with none)."""
    pid = getattr(signer, "pid", None)
    if pid is None:
        return 0.0
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


if __name__ == "__main__":
    sys.exit(main())
