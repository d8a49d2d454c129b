"""A partner's error answer to a consent request or grant is told whatever its reasons hold
(tidy29): its ``details.reasons`` went to ``list()`` as they came."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from gsomia.core.errors import PolicyDenied
from gsomia.shell import consents


@pytest.mark.parametrize(("details", "told"), [
    ({"reasons": "not cleared"}, ("not cleared",)),
    ({"reasons": ["not cleared", 7]}, ("HTTP 403: refused",)),
    ({"reasons": ["not cleared", "no agreement"]}, ("not cleared", "no agreement")),
    ("not a mapping", ("HTTP 403: refused",)),
    ({}, ("HTTP 403: refused",)),
])
def test_a_partners_refusal_is_told_whole(details: Any, told: tuple[str, ...]) -> None:
    answer = {"description": "refused", "details": details}
    client = httpx.Client(transport=httpx.MockTransport(
        lambda _: httpx.Response(403, json=answer)))
    with pytest.raises(PolicyDenied) as refused:
        consents._post(None, "https://jpn.test", "/peer/v1/consents/", {}, client=client)
    assert refused.value.reasons == told
