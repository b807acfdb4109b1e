"""The JSON schema of a study definition, for editors (completion, checks) and other tools.

``dse config schema`` prints :func:`study_schema`: the pydantic models' own schema with the
registries spelled out as enums (knob names with their legal ranges and choices, metric names,
GLUE task names, eNVM cells, samplers), so an editor completes and checks a YAML file without
running the tool. With the YAML language server (VS Code's YAML extension, and others), a first
line of the form ``# yaml-language-server: $schema=<path or URL of the printed schema>`` binds
the file to it.

The schema accepts a subset of what :func:`dse.config.load_study_config` accepts (it cannot say,
for instance, that a ``<task>.<knob>`` names a task of the same study); the tool's validation
stays the authority.
"""

from __future__ import annotations

import copy
import re
from typing import Any

from dse.config.knobs import KNOBS, METRICS, TASK_KNOBS, TASK_METRICS, Knob
from dse.config.study import CONFIG_VERSION, StudyConfig
from dse.config.tasks import TASKS

__all__ = ["SCHEMA_DIALECT", "study_schema"]

SCHEMA_DIALECT = "https://json-schema.org/draft/2020-12/schema"
_SEPARATORS = r"[\s_-]*"  # what dse.config.tasks.normalize_task_name drops


def _task_name_schema() -> dict[str, Any]:
    """The canonical names (for completion) or any spelling :func:`~dse.config.task_spec` accepts."""
    def spelled(name: str) -> str:
        chars = (f"[{c.upper()}{c}]" if c.isalpha() else re.escape(c) for c in name)
        return _SEPARATORS + _SEPARATORS.join(chars) + _SEPARATORS

    names = sorted(TASKS) + ["mnlim", "mnlimatched"]
    return {"anyOf": [{"enum": sorted(TASKS)},
                      {"type": "string", "pattern": "^(?:" + "|".join(spelled(n) for n in names) + ")$"}],
            "description": "GLUE task: " + ", ".join(sorted(TASKS))}


def _scoped(names: list[str] | tuple[str, ...]) -> str:
    """Pattern of ``<task>.<name>`` for every GLUE task and one of ``names``."""
    return rf"^(?:{'|'.join(sorted(TASKS))})\.(?:{'|'.join(names)})$"


def _objective_name_schema() -> dict[str, Any]:
    return {"anyOf": [{"enum": list(METRICS)}, {"type": "string", "pattern": _scoped(TASK_METRICS)}],
            "description": "a metric, or <task>.<metric> in a multi-task study"}


def _value_schema(knob: Knob) -> dict[str, Any]:
    """One legal value of ``knob`` (a fixed value, a low/high bound, a categorical choice)."""
    if knob.kind == "categorical":
        return {"enum": list(knob.choices or ())}
    return {"type": "number" if knob.kind == "float" else "integer", "minimum": knob.low, "maximum": knob.high}


def _param_schema(knob: Knob) -> dict[str, Any]:
    """What ``search_space.<knob>`` may hold: a range of its kind, or choices among its legal values."""
    value = _value_schema(knob)
    categorical = {"type": "object", "additionalProperties": False, "required": ["type", "choices"],
                   "properties": {"type": {"const": "categorical"},
                                  "choices": {"type": "array", "minItems": 1, "items": value}}}
    if knob.kind == "categorical":
        return categorical
    step = {"anyOf": [{"type": "number", "exclusiveMinimum": 0}, {"type": "null"}]}
    ranges = [{"type": "object", "additionalProperties": False, "required": ["type", "low", "high"],
               "properties": {"type": {"const": kind}, "low": bound, "high": bound,
                              "step": step if kind == "float" else {"type": "integer", "exclusiveMinimum": 0},
                              "log": {"type": "boolean"}}}
              for kind, bound in (("float", value), ("int", {**value, "type": "integer"}))
              if kind == "int" or knob.kind == "float"]  # an int knob takes no float range
    return {"anyOf": [*ranges, categorical]}


def _knob_table(entry: Any) -> dict[str, Any]:
    """An object keyed by knob names (and ``<task>.<knob>`` for the per-task ones), values ``entry(knob)``."""
    def described(name: str, knob: Knob) -> dict[str, Any]:
        return {**entry(knob), "description": f"{knob.help} (default {knob.default!r})"}

    return {
        "type": "object",
        "propertyNames": {"anyOf": [{"enum": list(KNOBS)}, {"pattern": _scoped(TASK_KNOBS)}]},
        "properties": {name: described(name, knob) for name, knob in KNOBS.items()},
        "patternProperties": {_scoped([name]): described(name, KNOBS[name]) for name in TASK_KNOBS},
        "additionalProperties": False,
    }


def study_schema() -> dict[str, Any]:
    """The JSON schema (draft 2020-12) of a study definition file."""
    schema = copy.deepcopy(StudyConfig.model_json_schema())
    defs = schema["$defs"]
    props = schema["properties"]
    props["version"] = {"const": CONFIG_VERSION, "default": CONFIG_VERSION, "description": "definition format"}
    props["task"] = {**_task_name_schema(), "default": "sst2"}
    defs["TaskEntry"]["properties"]["name"] = _task_name_schema()
    defs["Objective"]["properties"]["name"] = _objective_name_schema()
    props["search_space"] = {**_knob_table(_param_schema), "minProperties": 1,
                             "description": "knob -> range or choices to search"}
    props["fixed"] = {**_knob_table(_value_schema), "description": "knob -> value for every trial"}
    props["hypervolume_reference"] = {
        "anyOf": [{"type": "object", "propertyNames": _objective_name_schema(),
                   "additionalProperties": {"type": "number"}}, {"type": "null"}],
        "default": None, "description": "objective -> reference value (objective units)"}
    cells = list(KNOBS["envm_cell"].choices or ())
    defs["FaultsConfig"]["properties"]["cell_error_prob"].update(
        propertyNames={"enum": cells}, additionalProperties={"type": "number", "minimum": 0, "maximum": 1})
    return {"$schema": SCHEMA_DIALECT, **schema, "title": "edgebert-dse study definition",
            "description": "A study definition (search_spaces/*.yaml); print with: dse config schema"}
