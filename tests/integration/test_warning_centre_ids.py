"""The warning centre's output ids: stable across restarts of one node, unpredictable to any
other (a partner that could compute one could deliver a note under it first, and the centre
would take its own warning for published)."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime

from hypothesis import given, settings
from hypothesis import strategies as st

from gsomia.core.node_centre import NodeCentre, Output
from gsomia.shell import feeds
from gsomia.shell.node import Node
from gsomia.shell.warning_centre import id_secret, output_id

_epochs = st.datetimes(min_value=datetime(2000, 1, 1), max_value=datetime(2100, 1, 1),
                       timezones=st.just(UTC))
_keys = st.builds(lambda kind, n: f"{kind}/{n}",
                  st.sampled_from(["warning", "impact-prediction", "flight-path"]),
                  st.integers(1, 10_000))


def test_ids_are_stable_for_a_node_and_differ_between_nodes(
        node_factory: Callable[..., Node]) -> None:
    one, other = id_secret(node_factory("JPN")), id_secret(node_factory("JPN"))

    @settings(max_examples=30, deadline=None)
    @given(_epochs, st.lists(_keys, min_size=1, max_size=20, unique=True))
    def check(epoch: datetime, keys: list[str]) -> None:
        centre = NodeCentre("JPN", feeds.load_geography(), epoch=epoch)
        outputs = [Output("warning", k, 0.0, {}) for k in keys]
        mine = [output_id(one, centre, o) for o in outputs]
        assert mine == [output_id(one, centre, o) for o in outputs]  # the node restarted
        assert len(set(mine)) == len(mine)
        assert not {output_id(other, centre, o) for o in outputs} & set(mine)

    check()
