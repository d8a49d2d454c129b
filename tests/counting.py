"""Signature checks counted as they are submitted: shared by the tests of the seal's
remembered checks (what is not verified again must not be submitted)."""

from __future__ import annotations

from collections.abc import Callable, Sequence

from gsomia.core import crypto
from gsomia.service.ports import checks_here


class Counted:
    """Verifies in this process, counting the checks submitted."""

    def __init__(self) -> None:
        self.made = 0

    def submit(self, checks: Sequence[crypto.SignatureCheck]) -> Callable[[], list[bool]]:
        self.made += len(checks)
        return checks_here.submit(checks)
