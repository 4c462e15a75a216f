"""values.yaml and values.schema.json describe the same keys, and the ci sets cover them."""

from __future__ import annotations

import json

import helm_python
import jsonschema
import pytest
from helpers.values import CI_DIR, load_yaml

from alert_history_cache import chart

SCHEMA = json.loads((chart.CHART_DIR / "values.schema.json").read_text())
VALUES = chart.default_values()


def resolve(node: dict) -> dict:
    while "$ref" in node:
        assert node["$ref"].startswith("#/definitions/"), node["$ref"]
        node = SCHEMA["definitions"][node["$ref"].removeprefix("#/definitions/")]
    return node


def is_map(node: dict) -> bool:
    """A free-form map (labels, annotations, affinity): its keys are data, not options."""
    return "properties" not in node or "patternProperties" in node


def schema_keys(node: dict, prefix: str = "") -> set[str]:
    node = resolve(node)
    keys = set()
    for key, sub in node.get("properties", {}).items():
        if sub is False:  # a reserved key that must not be set
            continue
        path = f"{prefix}{key}"
        keys.add(path)
        sub = resolve(sub)
        if sub.get("type") == "object" and not is_map(sub):
            keys |= schema_keys(sub, path + ".")
    return keys


def value_keys(values: dict, schema: dict, prefix: str = "") -> set[str]:
    """Keys of a values tree; descends where the schema has named properties, not into maps."""
    schema = resolve(schema)
    keys = set()
    for key, value in values.items():
        path = f"{prefix}{key}"
        keys.add(path)
        sub = resolve(schema.get("properties", {}).get(key, {}))
        if isinstance(value, dict) and sub and not is_map(sub):
            keys |= value_keys(value, sub, path + ".")
    return keys


def test_schema_is_a_valid_draft7_schema():
    jsonschema.Draft7Validator.check_schema(SCHEMA)


def test_values_yaml_and_schema_have_the_same_keys():
    in_values, in_schema = value_keys(VALUES, SCHEMA), schema_keys(SCHEMA)
    assert sorted(in_values - in_schema) == [], "keys in values.yaml without a schema entry"
    assert sorted(in_schema - in_values) == [], "schema entries without a key in values.yaml"


def test_every_object_is_strict():
    """additionalProperties: false on every object with named properties or key patterns.

    Objects without either are Kubernetes objects passed through (affinity, peers, selectors), which
    kubernetes-validate checks in the rendered manifests. Conditions (if/then/else, not, contains, allOf) only
    refine an object that is strict itself, so they are not objects of their own.
    """
    loose = []
    conditions = {"if", "then", "else", "not", "contains", "allOf"}

    def walk(node, path):
        if isinstance(node, dict):
            if ("properties" in node or "patternProperties" in node) and node.get("additionalProperties") is not False:
                loose.append(path)
            for k, v in node.items():
                if k not in conditions:
                    walk(v, f"{path}/{k}")
        elif isinstance(node, list):
            for i, v in enumerate(node):
                walk(v, f"{path}/{i}")

    walk(SCHEMA, "#")
    assert loose == []


def test_values_yaml_is_valid():
    jsonschema.Draft7Validator(SCHEMA).validate(VALUES)
    helm_chart = chart._chart(str(chart.CHART_DIR))
    helm_chart.validate_schema(helm_chart.merge_values({}))


def test_full_values_set_every_key():
    """full-values.yaml touches every option, so every template branch is rendered and validated."""
    full = load_yaml(CI_DIR / "full-values.yaml")
    assert sorted(value_keys(VALUES, SCHEMA) - value_keys(full, SCHEMA)) == []


def test_every_ci_set_is_valid(ci_set):
    """Every ci set is valid for the schema on its own (merged over values.yaml)."""
    helm_chart = chart._chart(str(chart.CHART_DIR))
    helm_chart.validate_schema(helm_chart.merge_values(ci_set.values))
    jsonschema.Draft7Validator(SCHEMA).validate(chart.deep_merge(VALUES, ci_set.values))


def test_helm_render_itself_enforces_the_schema():
    """Not only chart.render's explicit validate_schema: Helm's own render refuses schema violations."""
    helm_chart = chart._chart(str(chart.CHART_DIR))
    with pytest.raises(helm_python.HelmValuesError, match="/valkey/settings/maxmemory"):
        helm_chart.render({"valkey": {"settings": {"maxmemory": "lots"}}}, name="alerthistory", namespace="default")
    with pytest.raises(helm_python.HelmValuesError, match="additional properties 'bogus'"):
        helm_chart.render({"valkey": {"bogus": 1}}, name="alerthistory", namespace="default")


def test_every_definition_is_used():
    text = json.dumps({k: v for k, v in SCHEMA.items() if k != "definitions"}) + json.dumps(SCHEMA["definitions"])
    unused = [name for name in SCHEMA["definitions"] if f'"#/definitions/{name}"' not in text]
    assert unused == []
