"""Bad input is refused at render time with a message that names the key.

Each tests/unit/invalid_values/NAME.yaml starts with `# expect: <substring>`: a part of Helm's message
that names the offending key (schema errors use JSON pointers such as /valkey/replicas, validateValues
uses dotted keys such as valkey.pdb.maxUnavailable).
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import yaml

from alert_history_cache import chart

CASES = sorted((Path(__file__).parent / "invalid_values").glob("*.yaml"))


def expectation(path: Path) -> str:
    match = re.fullmatch(r"# expect: (.+)", path.read_text().splitlines()[0])
    assert match, f"{path.name}: the first line must be '# expect: <substring naming the key>'"
    return match.group(1).strip()


def test_there_are_enough_cases():
    assert len(CASES) >= 28


@pytest.mark.parametrize("path", CASES, ids=lambda p: p.stem)
def test_refused_naming_the_key(path):
    expected = expectation(path)
    values = yaml.safe_load(path.read_text())
    with pytest.raises(chart.RenderError) as exc:
        chart.render(values)
    assert expected in str(exc.value)
