"""The story of the agreements, told by the real catalogue and release policy: their states
on key dates, and release decisions with their reasons (``gsomia demo``, ``gsomia report``).
"""

from __future__ import annotations

from typing import Any

from gsomia.core.agreements import Catalogue, status
from gsomia.core.labels import SecurityLabel
from gsomia.core.policy import Consent, ReleaseRequest, decide
from gsomia.core.types import instant

__all__ = ["KEY_DATES", "STORY", "agreement_story"]

KEY_DATES = ("2014-12-29", "2016-11-22", "2017-05-01", "2019-10-01", "2019-11-24",
             "2023-04-01", "2024-01-14")


def _request(item: str, sender: str, recipient: str, at: str, level: str, *,
             originator: str = "KOR", rel_to: tuple[str, ...] = ("KOR", "JPN", "USA"),
             scheme: str = "", consents: tuple[Consent, ...] = (),
             policy: str | None = None, category: str | None = None) -> ReleaseRequest:
    label = SecurityLabel(originator, level, frozenset(rel_to), "dprk-missile",
                          scheme=scheme or originator, policy=policy, category=category)
    return ReleaseRequest(item, label, sender, recipient, instant(at), consents)


STORY: tuple[tuple[str, ReleaseRequest], ...] = (
    ("2016: ROK HUMINT to Japan a day before the GSOMIA",
     _request("report--2016-11-22", "KOR", "JPN", "2016-11-22", "군사II급비밀")),
    ("2017: the same kind of report under the GSOMIA",
     _request("report--2017-08-29", "KOR", "JPN", "2017-08-29", "군사II급비밀")),
    ("2015: TISA, the US hub relays a ROK report without consent",
     _request("report--2015", "USA", "JPN", "2015-06-01", "SECRET", scheme="USA")),
    ("2015: TISA, the US hub relays it with ROK consent",
     _request("report--2015", "USA", "JPN", "2015-06-01", "SECRET", scheme="USA",
              consents=(Consent("report--2015", "KOR", "JPN"),))),
    ("2019-10: during the ROK notice of termination",
     _request("track--2019-10", "KOR", "JPN", "2019-10-02", "군사III급비밀")),
    ("2019: ROK top level to Japan",
     _request("plan--2019", "KOR", "JPN", "2019-05-01", "군사I급비밀")),
    ("2024: impact prediction under the trilateral mechanism",
     _request("ipp--2024-01-14", "KOR", "JPN", "2024-01-14", "군사II급비밀",
              policy="trilateral-mwd-2023", category="impact-prediction")),
    ("2024: a pre-launch indicator under the trilateral mechanism",
     _request("humint--2024-01-13", "KOR", "JPN", "2024-01-13", "군사II급비밀",
              policy="trilateral-mwd-2023", category="pre-launch-indicator")),
)


def agreement_story(cat: Catalogue) -> dict[str, Any]:
    states = {a.id: {d: status(a, instant(d)).to_json() for d in KEY_DATES}
              for a in sorted(cat.agreements.values(), key=lambda a: a.id)}
    decisions = [{"case": title, "request": r.to_json(), "decision": decide(r, cat).to_json()}
                 for title, r in STORY]
    return {"states": states, "decisions": decisions}
