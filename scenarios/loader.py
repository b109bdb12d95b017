"""Reading (and writing) scenario files: every problem reported at once, each with its path.

``load_scenario(path)`` reads a YAML file, ``parse_scenario(data)`` checks a dict already read
(``read_yaml(path)`` is the strict reading alone, for other YAML files such as experiments).
Either returns a :class:`~scenarios.schema.Scenario` or raises :class:`ScenarioError` listing
every problem found, one per line, as ``source: field.path[3]: what was expected``. Checked, in
order: the YAML itself (syntax, duplicate keys, a mapping at the top), the schema (types, ranges,
unknown keys), the references between parts (places, agents, event times) and the mind's
settings (``preset`` plus the ``settings`` overrides). Loading never writes anything;
:func:`write_scenario` is the one writer, and it replaces its file atomically.
"""

from __future__ import annotations

import os
import types
import typing
from collections.abc import Hashable
from pathlib import Path
from typing import Any, get_args, get_origin

import yaml
from pydantic import BaseModel, ValidationError

from actors.mind.settings import MindSettings
from scenarios.schema import Problem, Scenario, reference_problems
from serving.files import write_text_atomic


class ScenarioError(Exception):
    """A scenario that cannot be used: ``problems`` lists each (field path, what was expected)."""

    def __init__(self, source: str, problems: list[Problem]) -> None:
        self.source = source
        self.problems = list(problems)
        super().__init__(self._text())

    def _text(self) -> str:
        return "\n".join(
            f"{self.source}: {path}: {msg}" if path else f"{self.source}: {msg}"
            for path, msg in self.problems
        )

    def __str__(self) -> str:
        return self._text()


def load_scenario(path: str | os.PathLike[str]) -> Scenario:
    """Read and check the YAML scenario file at ``path``."""
    source = str(path)
    return parse_scenario(read_yaml(path, source), source=source)


def read_yaml(
    path: str | os.PathLike[str], source: str | None = None, *, what: str = "scenario"
) -> Any:
    """The mapping at the top of the YAML file at ``path``, read strictly (no key twice, no
    alias bomb); else :class:`ScenarioError` from ``source`` (default: ``path``). ``what``
    names the kind of file in the messages."""
    source = str(path) if source is None else source
    try:
        text = Path(path).read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ScenarioError(source, [("", "no such file")]) from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ScenarioError(source, [("", f"cannot be read: {exc}")]) from None
    try:
        data = yaml.load(text, Loader=_StrictLoader)  # a SafeLoader subclass
    except yaml.YAMLError as exc:
        raise ScenarioError(source, [("", _yaml_problem(exc))]) from None
    except RecursionError:
        raise ScenarioError(source, [("", f"nested too deeply to be {_a(what)}")]) from None
    except ValueError as exc:  # e.g. an integer of more digits than Python converts
        raise ScenarioError(source, [("", f"a value cannot be read: {exc}")]) from None
    if data is None:
        raise ScenarioError(source, [("", f"the file is empty (expected {_a(what)} mapping)")])
    if not isinstance(data, dict):
        found = type(data).__name__
        problem = f"the top level is a {found} (expected a mapping of {what} keys)"
        raise ScenarioError(source, [("", problem)])
    return data


def _a(noun: str) -> str:
    return f"{'an' if noun[:1] in ('a', 'e', 'i', 'o', 'u') else 'a'} {noun}"


def parse_scenario(data: Any, source: str = "<data>") -> Scenario:
    """Check ``data`` (a scenario as plain dicts and lists) and build the :class:`Scenario`."""
    if not isinstance(data, dict):
        found = type(data).__name__
        problem = f"the top level is a {found} (expected a mapping of scenario keys)"
        raise ScenarioError(source, [("", problem)])
    problems: list[Problem] = []
    scenario: Scenario | None = None
    try:
        scenario = Scenario.model_validate(data, context={"defer_references": True})
    except ValidationError as exc:
        problems += validation_problems(exc, Scenario)
    except RecursionError:
        raise ScenarioError(source, [("", "nested too deeply to be a scenario")]) from None
    if scenario is not None:
        problems += reference_problems(scenario)
    problems += _settings_problems(data)
    if problems or scenario is None:
        raise ScenarioError(source, problems)
    return scenario


def mind_settings(scenario: Scenario) -> MindSettings:
    """The mind's settings of ``scenario``: its preset, its overrides and its step length."""
    return scenario.settings


def write_scenario(scenario: Scenario, path: str | os.PathLike[str]) -> None:
    """Write ``scenario`` as YAML that :func:`load_scenario` reads back equal (atomically)."""
    target = Path(path)
    text = yaml.safe_dump(
        scenario.model_dump(mode="json"), sort_keys=False, allow_unicode=True, width=100
    )
    write_text_atomic(target, text, fsync=True)


# --- the mind's settings ------------------------------------------------------------------


def _settings_problems(data: dict[str, Any]) -> list[Problem]:
    """Where ``settings`` sets what only the top level may (the preset, another step length);
    its values are checked as ``Scenario.settings``."""
    settings = data.get("settings", {})
    preset = data.get("preset", "paper")
    if not isinstance(settings, dict) or preset not in ("paper", "reference"):
        return []
    problems: list[Problem] = []
    if "preset" in settings:
        problems.append(("settings.preset", "set the preset at the top level (`preset:`)"))
    step = data.get("step_seconds", 10)
    if "step_seconds" in settings and settings["step_seconds"] != step:
        problems.append(
            (
                "settings.step_seconds",
                f"differs from the scenario's step_seconds ({step}); set it only at the top level",
            )
        )
    return problems  # the values: validated once, as Scenario.settings


# --- pydantic errors as (path, expected) ----------------------------------------------------


def validation_problems(
    exc: ValidationError, root: type[BaseModel], prefix: str = ""
) -> list[Problem]:
    """Each error of ``exc`` (raised validating ``root``) as (``a.b[2].c`` path, message)."""
    errors = _drop_losing_union_branches(exc.errors())
    problems: list[Problem] = []
    for err in errors:
        path, model = _walk(root, err["loc"])
        full = ".".join(p for p in (prefix, path) if p).replace(".[", "[")
        problems.append((full, _message(err, model)))
    return list(dict.fromkeys(problems))


def _message(err: Any, model: type[BaseModel] | None) -> str:
    kind, msg = err["type"], str(err["msg"])
    if kind == "extra_forbidden":
        valid = ", ".join(model.model_fields) if model is not None else "(see the schema)"
        return f"unknown key (a typo?); expected one of: {valid}"
    if kind == "missing":
        if err["loc"] and isinstance(err["loc"][-1], int):
            return "missing item (too few values)"
        return "required field is missing"
    if msg.startswith("Value error, "):
        msg = msg[len("Value error, ") :]
    if kind.endswith(("_type", "_parsing", "literal_error", "_pattern_mismatch")) or "than" in msg:
        msg += f" (got {err['input']!r})"
    return msg


def _walk(root: type[BaseModel], loc: tuple[Any, ...]) -> tuple[str, type[BaseModel] | None]:
    """The printable path of ``loc`` (union-branch tags removed), and the model holding its last
    key (for listing the valid keys when that key is unknown)."""
    parts: list[str] = []
    current: Any = root
    holder: type[BaseModel] | None = root
    for item in loc:
        options = _union_members(current)
        if options is not None and isinstance(item, str):
            named = [m for m in options if _type_name(m) == item]
            if named:
                current = named[0]  # a union branch's tag, not part of the path
                continue
            models = [m for m in options if _is_model(m)]
            current = models[0] if len(models) == 1 else Any
        if isinstance(item, int):
            parts.append(f"[{item}]")
            current = _item_type(current)
            continue
        parts.append(str(item))
        if _is_model(current):
            holder = current
            field = current.model_fields.get(str(item))
            current = field.annotation if field is not None else Any
        else:
            holder = None
            current = _value_type(current)
    return ".".join(parts), holder


def _drop_losing_union_branches(errors: list[Any]) -> list[Any]:
    """Where a value failed every branch of a union, keep the branch it was meant for: drop a
    branch that failed only because the value has another type (``str`` for a mapping)."""
    tagged: dict[tuple[Any, ...], int] = {}
    for err in errors:
        for i, item in enumerate(err["loc"]):
            if isinstance(item, str) and (item in _SCALAR_TAGS or item[:1].isupper()):
                tagged[err["loc"][:i]] = tagged.get(err["loc"][:i], 0) + 1
    kept = []
    for err in errors:
        loc = err["loc"]
        losing = (
            len(loc) >= 1
            and loc[-1] in _SCALAR_TAGS
            and err["type"].endswith("_type")
            and tagged.get(loc[:-1], 0) > 1
        )
        if not losing:
            kept.append(err)
    return kept or errors


_SCALAR_TAGS = {"str", "int", "float", "bool", "datetime", "date", "time"}


def _union_members(tp: Any) -> tuple[Any, ...] | None:
    if get_origin(tp) in (types.UnionType, typing.Union):
        return tuple(m for m in get_args(tp) if m is not type(None))
    return None


def _is_model(tp: Any) -> bool:
    return isinstance(tp, type) and issubclass(tp, BaseModel)


def _type_name(tp: Any) -> str:
    return tp.__name__ if isinstance(tp, type) else str(tp)


def _item_type(tp: Any) -> Any:
    members = _union_members(tp)
    if members is not None and len(members) == 1:
        tp = members[0]
    if get_origin(tp) in (list, tuple, set) and get_args(tp):
        return get_args(tp)[0]
    return Any


def _value_type(tp: Any) -> Any:
    if get_origin(tp) is dict and len(get_args(tp)) == 2:
        return get_args(tp)[1]
    return Any


# --- YAML ------------------------------------------------------------------------------------


MAX_YAML_NODES = 200_000
"""Most nodes a scenario file may expand to, aliases followed: a few hundred bytes of nested
aliases (a "billion laughs") expand exponentially and are refused before anything walks them."""


class _StrictLoader(yaml.SafeLoader):
    """``yaml.SafeLoader`` that refuses a key given twice in one mapping (never last-one-wins)
    and a document whose aliases expand beyond :data:`MAX_YAML_NODES` nodes."""

    def get_single_data(self) -> Any:
        node = self.get_single_node()
        if node is None:
            return None
        _check_expansion(node)
        return self.construct_document(node)


def _check_expansion(root: yaml.Node) -> None:
    """Counts the nodes ``root`` expands to (a node reached by several aliases counts each
    time), without expanding anything; raises past :data:`MAX_YAML_NODES`."""
    sizes: dict[int, int] = {}
    stack: list[tuple[yaml.Node, bool]] = [(root, False)]
    while stack:
        node, children_done = stack.pop()
        if id(node) in sizes:
            continue
        if isinstance(node, yaml.MappingNode):
            children = [n for pair in node.value for n in pair]
        elif isinstance(node, yaml.SequenceNode):
            children = list(node.value)
        else:
            sizes[id(node)] = 1
            continue
        if not children_done:
            stack.append((node, True))
            stack.extend((c, False) for c in children if id(c) not in sizes)
            continue
        size = 1 + sum(sizes.get(id(c), 1) for c in children)
        if size > MAX_YAML_NODES:
            raise yaml.YAMLError(
                f"the document expands to more than {MAX_YAML_NODES} nodes through its aliases "
                "(expected a plain scenario)"
            )
        sizes[id(node)] = size


def _construct_mapping(loader: _StrictLoader, node: yaml.MappingNode) -> dict[Any, Any]:
    seen: dict[Any, Any] = {}
    for key_node, _ in node.value:
        key = loader.construct_object(key_node, deep=True)
        if not isinstance(key, Hashable):
            continue  # SafeLoader itself reports an unhashable key
        if key in seen:
            raise yaml.constructor.ConstructorError(
                "while reading a mapping",
                node.start_mark,
                f"found the key {key!r} twice (expected each key once)",
                key_node.start_mark,
            )
        seen[key] = True
    return loader.construct_mapping(node, deep=True)


_StrictLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _construct_mapping)


def _yaml_problem(exc: yaml.YAMLError) -> str:
    mark = getattr(exc, "problem_mark", None) or getattr(exc, "context_mark", None)
    what = getattr(exc, "problem", None) or str(exc)
    where = f"line {mark.line + 1}, column {mark.column + 1}: " if mark is not None else ""
    return f"{where}not valid YAML: {what}"
