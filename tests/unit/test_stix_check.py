"""The pattern check decides once per pattern shape: it must agree with stix2-patterns itself
on every pattern, including the ones built to confuse the shape (quotes, escapes, typed
literals, comments, hashes)."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st
from stix2patterns.validator import run_validator

from gsomia.shell.stix_check import _pattern_problem, pattern_shape


def _valid(pattern: str) -> bool:
    try:
        return not run_validator(pattern, stix_version="2.1")
    except Exception:  # the ANTLR front end raises on some odd input; the check says no
        return False


_TEXT = st.text(alphabet=st.sampled_from(list("ab'\\ /*-:[]=0tT")), max_size=8)
_VALUES = st.one_of(
    _TEXT.map(lambda t: f"'{t}'"),
    st.sampled_from(["'site-1'", "'it\\'s'", "'a\\\\'", "'\\n'", "'x", "t'2020-01-01T00:00:00Z'",
                     "t'not a time'", "h'ab'", "h'zz'", "b'AAAA'", "b'@@'", "12", "-1.5",
                     "true", "('a', 'b')", "'d41d8cd98f00b204e9800998ecf8427e'",
                     "'not-a-hash'"]),
)
_PATHS = st.sampled_from(["file:name", "x-dprk-site:name", "file:hashes.MD5",
                          "file:hashes.'SHA-256'", "file:hashes.'hashes'", "url:value",
                          "network-traffic:src_ref.value", "file:parent_directory_ref.path",
                          "file:name'x'", "t'x':name", "ipv4-addr:value"])
_OPS = st.sampled_from(["=", "!=", "LIKE", "MATCHES", "<", ">=", "IN", "NOT ="])
_GLUE = st.sampled_from([" AND ", " OR ", "", " /* it's */ ", " // 'x'\n", " FOLLOWEDBY "])


@st.composite
def patterns(draw: st.DrawFn) -> str:
    parts = []
    for _ in range(draw(st.integers(1, 3))):
        comparisons = [f"{draw(_PATHS)} {draw(_OPS)} {draw(_VALUES)}"
                       for _ in range(draw(st.integers(1, 2)))]
        parts.append("[" + draw(st.sampled_from([" AND ", " OR "])).join(comparisons) + "]")
    text = draw(_GLUE).join(parts)
    if draw(st.booleans()):
        text += draw(st.sampled_from([" WITHIN 5 SECONDS", " REPEATS 2 TIMES",
                                      " START t'2020-01-01T00:00:00Z' STOP "
                                      "t'2021-01-01T00:00:00Z'", "'"]))
    return text


@settings(max_examples=300, deadline=None)
@given(patterns())
def test_the_shape_check_agrees_with_stix2_patterns(pattern: str) -> None:
    assert (_pattern_problem(pattern) is None) == _valid(pattern)


@settings(max_examples=200, deadline=None)
@given(_TEXT, _TEXT)
def test_patterns_differing_only_in_plain_strings_share_a_shape(a: str, b: str) -> None:
    one, other = (pattern_shape(f"[file:name = {v!r}]".replace('"', "'")) for v in (a, b))
    if "'" not in a + b and "\\" not in a + b and "/" not in a + b:
        assert one == other == "[file:name = 's']"


def test_shapes_keep_what_the_validator_reads() -> None:
    assert pattern_shape("[x-dprk-site:name = 'site-1']") == "[x-dprk-site:name = 's']"
    assert pattern_shape("[file:name = 'it\\'s' AND file:size > 5]") == \
        "[file:name = 's' AND file:size > 5]"
    for kept in ("[file:hashes.MD5 = 'd41d8cd98f00b204e9800998ecf8427e']",
                 "[file:name = 'a'] /* 'b' */", "[file:name = 'open",
                 "[file:created = t'2020-01-01T00:00:00Z']"):
        assert pattern_shape(kept) in (kept, kept.replace("'a'", "'s'"))
    assert pattern_shape("[file:created = t'2020-01-01T00:00:00Z']") == \
        "[file:created = t'2020-01-01T00:00:00Z']"
    # a bad hash must still be refused though a good one of the same shape was accepted
    assert _pattern_problem("[file:hashes.MD5 = 'd41d8cd98f00b204e9800998ecf8427e']") is None
    assert _pattern_problem("[file:hashes.MD5 = 'nothex']") is not None
