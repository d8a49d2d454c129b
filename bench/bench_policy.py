"""Release-policy decisions per second, beside the same rules as a Cedar policy set (cedarpy).

The Cedar policies are generated from the same catalogue, one ``permit`` per agreement and
channel, so both engines decide the same requests; the run counts any disagreement.
"""

from __future__ import annotations

import random
import time
from datetime import UTC, date, datetime, timedelta
from typing import Any

import cedarpy

from gsomia.core.agreements import Catalogue, in_force_periods
from gsomia.core.labels import SecurityLabel
from gsomia.core.policy import Consent, ReleaseRequest, decide
from gsomia.shell.catalogue import load_catalogue

EPOCH = date(1970, 1, 1)
PARTIES = ["JPN", "KOR", "USA"]
LEVELS = [("JPN", "極秘"), ("JPN", "秘"), ("JPN", "機密"), ("KOR", "군사I급비밀"),
          ("KOR", "군사II급비밀"), ("KOR", "군사III급비밀"), ("USA", "SECRET"),
          ("USA", "TOP SECRET"), ("USA", "CONFIDENTIAL")]


def _days(d: date) -> int:
    return (d - EPOCH).days


def cedar_policies(cat: Catalogue) -> str:
    """The catalogue's release rules in Cedar: deny by default, one permit per channel."""
    out = []
    for a in cat.agreements.values():
        periods = " || ".join(
            f"(context.day >= {_days(s)}" + (f" && context.day < {_days(e)})" if e else ")")
            for s, e in in_force_periods(a))
        purposes = ", ".join(f'"{p}"' for p in a.purposes)
        for s in sorted(a.parties):
            for r in sorted(a.parties):
                if not a.carries(s, r):
                    continue
                levels = ", ".join(f'"{p}:{lv}"' for row in a.equivalence if r in row.levels
                                   for p, names in row.levels.items() for lv in names)
                kinds = ("" if a.information_kinds is None else " && [" + ", ".join(
                    f'"{k}"' for k in sorted(a.information_kinds))
                    + "].contains(resource.category)")
                out.append(f"""permit(principal == Party::"{s}", action == Action::"release",
  resource)
when {{
  context.recipient == "{r}" && resource.rel_to.contains(context.recipient) &&
  ({periods}) &&
  [{levels}].contains(resource.scheme_level) &&
  [{purposes}].contains(resource.purpose) &&
  (resource.policy == "" || resource.policy == "{a.id}"){kinds} &&
  (resource.caveats == [] ||
   (resource.caveats == ["NOFORN"] && context.recipient == resource.originator)) &&
  (resource.originator == "{s}" || context.consents.contains(
    {{"item": resource.item_id, "originator": resource.originator,
      "recipient": context.recipient}}))
}};""")
    return "\n".join(out)


def sample(n: int, seed: int = 7) -> list[ReleaseRequest]:
    rng = random.Random(seed)
    base = datetime(2010, 1, 1, tzinfo=UTC)
    out = []
    for i in range(n):
        originator = rng.choice(PARTIES)
        sender = originator if rng.random() < 0.7 else rng.choice(PARTIES)
        recipient = rng.choice(PARTIES)
        scheme, level = rng.choice([lv for lv in LEVELS if lv[0] in (originator, sender)])
        item = f"item--{i}"
        consents = (Consent(item, originator, recipient),) if rng.random() < 0.5 else ()
        label = SecurityLabel(
            originator, level, frozenset(rng.sample(PARTIES, rng.randint(1, 3))),
            rng.choice(["dprk-missile", "dprk-missile", "regional-security"]),
            frozenset(["NOFORN"]) if rng.random() < 0.05 else frozenset(), scheme,
            rng.choice([None, None, None, "trilateral-mwd-2023", "tisa-2014"]),
            rng.choice([None, "impact-prediction", "pre-launch-indicator"]))
        at = base + timedelta(days=rng.randint(0, 5800))
        out.append(ReleaseRequest(item, label, sender, recipient, at, consents))
    return out


def cedar_request(r: ReleaseRequest) -> tuple[dict[str, Any], dict[str, Any]]:
    lab = r.label
    entity = {"uid": {"type": "Item", "id": r.item_id}, "parents": [], "attrs": {
        "item_id": r.item_id, "originator": lab.originator, "rel_to": sorted(lab.rel_to),
        "scheme_level": f"{lab.scheme}:{lab.level}", "purpose": lab.purpose,
        "policy": lab.policy or "", "category": lab.category or "",
        "caveats": sorted(lab.caveats)}}
    request = {"principal": f'Party::"{r.sender}"', "action": 'Action::"release"',
               "resource": f'Item::"{r.item_id}"', "context": {
                   "recipient": r.recipient, "day": _days(r.at.date()),
                   "consents": [{"item": c.item_id, "originator": c.originator,
                                 "recipient": c.recipient} for c in r.consents]}}
    return request, entity


def run() -> dict[str, Any]:
    cat = load_catalogue()
    requests = sample(20_000)
    # ours, one at a time, reasons included
    best = 0.0
    for _ in range(3):
        t0 = time.perf_counter()
        ours = [decide(r, cat) for r in requests]
        best = max(best, len(requests) / (time.perf_counter() - t0))
    policies = cedarpy.PolicySet.from_str(cedar_policies(cat))
    few = requests[:2_000]
    pairs = [cedar_request(r) for r in few]
    t0 = time.perf_counter()
    single = [cedarpy.is_authorized(req, policies, [ent]) for req, ent in pairs]
    cedar_single = len(few) / (time.perf_counter() - t0)
    t0 = time.perf_counter()
    batched = []
    for i in range(0, len(pairs), 1000):
        chunk = pairs[i:i + 1000]
        batched += cedarpy.is_authorized_batch([p[0] for p in chunk], policies,
                                               [p[1] for p in chunk])
    cedar_batch = len(few) / (time.perf_counter() - t0)
    disagreements = sum(
        (s.decision == cedarpy.Decision.Allow) != o.permit
        for s, o in zip(single, ours, strict=False))
    assert [b.decision for b in batched] == [s.decision for s in single]
    permits = sum(o.permit for o in ours)
    figures = {
        "gsomia_decisions_per_s": round(best),
        "cedarpy_single_per_s": round(cedar_single),
        "cedarpy_batch1000_per_s": round(cedar_batch),
        "ratio_vs_cedar_single": round(best / cedar_single, 1),
        "ratio_vs_cedar_batch": round(best / cedar_batch, 1),
        "permit_share": round(permits / len(requests), 3),
        "disagreements_with_cedar": disagreements,
        "compared": len(few),
    }
    print(f"gsomia decide (with reasons, 1 core): {figures['gsomia_decisions_per_s']:>9,} /s")
    print(f"cedarpy is_authorized (one at a time): {figures['cedarpy_single_per_s']:>8,} /s  "
          f"→ ratio {figures['ratio_vs_cedar_single']}×")
    print(f"cedarpy is_authorized_batch (1,000):   {figures['cedarpy_batch1000_per_s']:>8,} /s  "
          f"→ ratio {figures['ratio_vs_cedar_batch']}×")
    print(f"permits {permits}/{len(requests)}; disagreements with Cedar on {len(few)}: "
          f"{disagreements}")
    return figures
