"""The JSON arrays of the acceptance statement are exactly ``json.dumps`` of the values."""

from __future__ import annotations

import json

import pytest

from postyard.sending.accept import _json_array


@pytest.mark.parametrize(
    "values",
    [
        (),
        [],
        ("ann@example.com",),
        ("ann@example.com", "jöhn@example.com", 'q"uote@example.com'),
        [{"name": "category", "value": "welcome"}],
    ],
)
def test_json_array_is_json_dumps(values: tuple[object, ...] | list[object]) -> None:
    assert _json_array(values) == json.dumps(values)
