"""Label validation and selectors (Kubernetes syntax), and matching by label index."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from schemas.labels import SelectorError, check_label, match_all, parse_selector

LABELS = {"env": "prod", "tier": "edge", "zone": "a"}


@pytest.mark.parametrize(
    ("selector", "expected"),
    [
        ("", True),
        ("env=prod", True),
        ("env==prod", True),
        ("env=dev", False),
        ("env!=dev", True),
        ("missing!=x", True),
        ("env in (prod, dev)", True),
        ("env in (dev)", False),
        ("env notin (dev,test)", True),
        ("missing notin (x)", True),
        ("tier", True),
        ("missing", False),
        ("!missing", True),
        ("!tier", False),
        ("env=prod,tier=edge,zone in (a,b),!gpu", True),
        ("env=prod, tier=core", False),
        ("example.com/role=", False),
    ],
)
def test_selectors_match_like_kubernetes(selector: str, expected: bool) -> None:
    assert parse_selector(selector).matches(LABELS) is expected


@pytest.mark.parametrize(
    "selector",
    ["env=", "env in ()", "env in (a", "=x", "env=a=b", "env in a", "-bad=x", "a b", "env=prod,",
     "env=-x", "x" * 5000],
)
def test_invalid_selectors_say_why(selector: str) -> None:
    if selector == "env=":  # an empty value is valid: it matches an empty label
        assert parse_selector(selector).matches({"env": ""})
        return
    with pytest.raises(SelectorError) as caught:
        parse_selector(selector)
    assert caught.value.code == 400 and "invalid selector" in caught.value.message


@pytest.mark.parametrize(
    ("key", "value", "ok"),
    [("env", "prod", True), ("example.com/role", "", True), ("a" * 64, "x", False),
     ("Bad_Prefix/x", "y", False), ("env", "-x", False), ("env", "a" * 64, False)],
)
def test_check_label(key: str, value: str, ok: bool) -> None:
    if ok:
        check_label(key, value)
    else:
        with pytest.raises(ValueError, match="label"):
            check_label(key, value)


values = st.sampled_from(["a", "b", "c"])
labelsets = st.dictionaries(st.sampled_from(["env", "zone", "gpu"]), values, max_size=3)
requirements = st.one_of(
    st.builds(lambda k, v, op: f"{k}{op}{v}", st.sampled_from(["env", "zone", "gpu"]), values,
              st.sampled_from(["=", "==", "!="])),
    st.builds(lambda k, vs, op: f"{k} {op} ({','.join(vs)})", st.sampled_from(["env", "zone"]),
              st.lists(values, min_size=1, max_size=3), st.sampled_from(["in", "notin"])),
    st.builds(lambda k, neg: f"{neg}{k}", st.sampled_from(["env", "gpu"]), st.sampled_from(["", "!"])),
)


@given(
    nodes=st.dictionaries(st.sampled_from([f"n{i}" for i in range(8)]), labelsets, max_size=8),
    selectors=st.dictionaries(st.sampled_from(["x", "y", "z"]),
                              st.lists(requirements, max_size=3).map(",".join), max_size=3),
)
def test_the_index_agrees_with_matching_one_by_one(
    nodes: dict[str, dict[str, str]], selectors: dict[str, str]
) -> None:
    parsed = {app: parse_selector(text) for app, text in selectors.items()}
    expected = {node: {app for app, s in parsed.items() if s.matches(labels)}
                for node, labels in nodes.items()}
    assert match_all(parsed, nodes) == expected
