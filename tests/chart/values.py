"""Values layering and a cached render, shared by the chart test modules."""

import copy
import json
from functools import cache

from tests.chart.test_chart import run_render


def merged(*layers: dict) -> dict:
    """Layers of values merged as Helm merges -f files: later maps win key by key."""
    out: dict = {}
    for layer in layers:
        out = _merge(out, layer)
    return out


def _merge(base: dict, extra: dict) -> dict:
    out = copy.deepcopy(base)
    for key, value in extra.items():
        out[key] = (
            _merge(out[key], value)
            if isinstance(value, dict) and isinstance(out.get(key), dict)
            else value
        )
    return out


@cache
def _render(values_json: str) -> list[dict]:
    result = run_render(json.loads(values_json))
    assert result.returncode == 0, result.stderr[-3000:]
    return json.loads(result.stdout)


def render(values: dict) -> list[dict]:
    """The chart's objects for `values` (rendered once per distinct values)."""
    return _render(json.dumps(values, sort_keys=True))
