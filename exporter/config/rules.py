"""Config sections and their rules across keys: each rule runs whenever the keys it reads are valid.

A pydantic model validator runs only once its whole section validated, so a problem across keys
would show only after every other problem of the section was fixed. A rule declared here instead
names the keys it reads; it runs on those keys, each validated on its own, whatever else is wrong,
and its problems join the schema's in the same ValidationError: one pass lists every problem.
"""

from __future__ import annotations

import types
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from functools import cache
from typing import Annotated, Any, Self, Union, get_args, get_origin

from pydantic import BaseModel, ConfigDict, ModelWrapValidatorHandler, TypeAdapter, ValidationError, model_validator
from pydantic_core import InitErrorDetails, PydanticCustomError

# (where, relative to the section: "" is the section itself, "max_age", "pools[1].name"; message)
Problem = tuple[str, str]
Loc = tuple[int | str, ...]
RULE_ERROR = "config_rule"


@dataclass(frozen=True)
class Given:
    """A key a rule reads only as "set to something" (valid or not), e.g. whether tokens are configured."""

    key: str


Need = str | Given


@dataclass(frozen=True)
class Rule:
    """A check across keys of one section; `needs` are the keys it reads, passed to `check` in that order.

    A key is a field of the section (`max_age`), a dotted path into a sub-section (`admin.listen`),
    a path through each item of a list (`pools[].name`, passed as [(index, value), ...] for the
    items where it is valid), or Given(key) (passed as a bool).
    """

    needs: tuple[Need, ...]
    check: Callable[..., Iterable[Problem]]

    @property
    def text(self) -> str:
        """What the rule requires, in words (the check's docstring)."""
        return " ".join((self.check.__doc__ or "").split())


def rule(*needs: Need) -> Callable[[Callable[..., Iterable[Problem]]], Rule]:
    """Declare a static method of a Section as a rule over `needs`."""

    def declare(check: Callable[..., Iterable[Problem]]) -> Rule:
        func = check.__func__ if isinstance(check, staticmethod) else check
        return Rule(needs, func)

    return declare


class _Unusable(Exception):
    """A key the rule needs is invalid (reported by the schema) or cannot be reached."""


_MISSING = object()


class Section(BaseModel):
    """Base of every config section: unknown keys are errors; rules run on whatever keys are valid.

    A field's checks live in its type (exporter/config/values.py), never in a field validator,
    so a key can be validated on its own from its annotation; tests/unit/config/test_rules.py holds that.
    """

    model_config = ConfigDict(
        extra="forbid", validate_default=True, use_attribute_docstrings=True, ignored_types=(Rule,)
    )

    @model_validator(mode="wrap")
    @classmethod
    def _rules(cls, data: Any, handler: ModelWrapValidatorHandler[Self]) -> Self:
        """The section's schema, then every rule whose keys are valid; all problems in one ValidationError."""
        rules = rules_of(cls)
        if not rules or not isinstance(data, dict):
            return handler(data)
        failure: ValidationError | None = None
        try:
            section = handler(data)
        except ValidationError as exc:
            failure = exc
        errors = failure.errors(include_url=False) if failure is not None else []
        locs = [tuple(error["loc"]) for error in errors]
        found = [(each, problem) for each in rules for problem in _run(each, cls, data, locs)]
        if not found:
            if failure is not None:
                raise failure
            return section
        details = [again(error) for error in errors]
        details += [_rule_error(each, where, message) for each, (where, message) in found]
        raise ValidationError.from_exception_data(cls.__name__, details)


@cache
def rules_of(cls: type[BaseModel]) -> tuple[Rule, ...]:
    """The rules of a section, its base classes' first."""
    return tuple(value for klass in reversed(cls.__mro__) for value in vars(klass).values() if isinstance(value, Rule))


def again(error: Any) -> InitErrorDetails:
    """A pydantic error as it can be raised once more (type, message and context kept)."""
    kind = PydanticCustomError(error["type"], error["msg"], error.get("ctx"))
    return InitErrorDetails(type=kind, loc=tuple(error["loc"]), input=error.get("input"))


def parse_loc(where: str) -> Loc:
    """`pools[1].name` as pydantic's location ('pools', 1, 'name'); "" is ()."""
    loc: list[int | str] = []
    for part in where.replace("[", ".[").split("."):
        if part.startswith("["):
            loc.append(int(part[1:-1]))
        elif part:
            loc.append(part)
    return tuple(loc)


def _rule_error(each: Rule, where: str, message: str) -> InitErrorDetails:
    """A rule's problem as a pydantic error; its context keeps the keys the rule read."""
    reads = tuple(need.key if isinstance(need, Given) else need for need in each.needs)
    kind = PydanticCustomError(RULE_ERROR, "{message}", {"message": message, "reads": reads, "at": where})
    return InitErrorDetails(type=kind, loc=parse_loc(where), input=None)


def _run(each: Rule, cls: type[BaseModel], data: dict[str, Any], errors: list[Loc]) -> list[Problem]:
    """The rule's problems, or none when a key it needs is not valid."""
    try:
        args = [_given(data, need.key) if isinstance(need, Given) else _value(cls, data, need, errors)
                for need in each.needs]  # fmt: skip
    except _Unusable:
        return []
    return list(each.check(*args))


def _given(data: Any, key: str) -> bool:
    """Whether `key` is set to something (not null, not empty) in the raw data."""
    for part in key.split("."):
        data = data.get(part) if isinstance(data, dict) else None
    return data is not None and data != "" and data != [] and data != {}


def _value(cls: type[BaseModel], data: Any, key: str, errors: list[Loc]) -> Any:
    """The value of `key` in the raw data of a `cls` section, validated on its own (or its default)."""
    if not isinstance(data, dict):
        raise _Unusable
    head, _, rest = key.partition(".")
    listed = head.endswith("[]")
    name = head.removesuffix("[]")
    field = cls.model_fields[name]
    raw = data.get(name, _MISSING)
    here: Loc = (name,)
    if listed:
        if raw is _MISSING:
            return []
        if not isinstance(raw, list) or any(loc[:1] == here and len(loc) == 1 for loc in errors):
            raise _Unusable
        item_model = section_model(field.annotation)
        found = []
        for i, item in enumerate(raw):
            inside = [loc[2:] for loc in errors if loc[:2] == (name, i)]
            try:
                found.append((i, _value(item_model, item, rest, inside) if rest else _item(item_model, item, inside)))
            except _Unusable:
                continue
        return found
    if not rest:
        if raw is _MISSING:
            return field.get_default(call_default_factory=True)
        return _alone(cls, name, raw, [loc[1:] for loc in errors if loc[:1] == here])
    if raw is _MISSING:
        if field.get_default(call_default_factory=True) is None:
            raise _Unusable
        raw = {}  # a section left out is its defaults
    return _value(section_model(field.annotation), raw, rest, [loc[1:] for loc in errors if loc[:1] == here])


def _alone(cls: type[BaseModel], name: str, raw: Any, errors: list[Loc]) -> Any:
    """A field's raw value validated on its own: unusable when the schema found a problem in it."""
    if errors:
        raise _Unusable
    try:
        return _adapter(cls, name).validate_python(raw)
    except ValidationError:
        raise _Unusable from None


def _item(model: type[BaseModel], raw: Any, errors: list[Loc]) -> BaseModel:
    """A list item (a whole section) validated on its own: unusable when the schema found a problem in it."""
    if errors:
        raise _Unusable
    try:
        return model.model_validate(raw)
    except ValidationError:
        raise _Unusable from None


@cache
def _adapter(cls: type[BaseModel], name: str) -> TypeAdapter[Any]:
    """Validation of one field alone: its type and constraints (which hold all of its checks)."""
    return TypeAdapter(cls.model_fields[name].rebuild_annotation())


def strip(annotation: Any) -> tuple[Any, list[Any]]:
    """An annotation without `Annotated[...]`, and the metadata that wrapped it."""
    metadata: list[Any] = []
    while get_origin(annotation) is Annotated:
        annotation, *more = get_args(annotation)
        metadata += more
    return annotation, metadata


def members(annotation: Any) -> list[Any]:
    """The members of a union (`X | None` is X and None), or the annotation alone."""
    annotation, _ = strip(annotation)
    return list(get_args(annotation)) if get_origin(annotation) in (Union, types.UnionType) else [annotation]


def section_of(annotation: Any) -> tuple[type[BaseModel] | None, bool]:
    """The section model a field holds (`Model`, `Model | None`, `list[Model]`), and whether it is a list of them."""
    for member in members(annotation):
        member, _ = strip(member)
        if get_origin(member) is list:
            inner, _ = strip(get_args(member)[0])
            if isinstance(inner, type) and issubclass(inner, BaseModel):
                return inner, True
        elif isinstance(member, type) and issubclass(member, BaseModel):
            return member, False
    return None, False


def section_model(annotation: Any) -> type[BaseModel]:
    """The section model a field holds; TypeError when it holds none."""
    model, _ = section_of(annotation)
    if model is None:
        raise TypeError(f"{annotation!r} holds no config section")
    return model
