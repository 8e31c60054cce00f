"""`[alerts]`: the built-in alert conditions (agent/alerts/schema.py), each with `enabled`,
`for` and its tunable keys. The table models are made from the schema, so every key, its
range and its default are written once, there."""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated, Any, ClassVar

from pydantic import Field, create_model, model_validator

from agent.alerts.schema import CONDITIONS, Param
from agent.config.base import Section, problem
from agent.config.types import (
    Bool,
    choice,
    duration,
    int_range,
    parse_duration,
    to_number_range,
    toml_value,
)


class AlertRule(Section):
    """One built-in condition as configured."""

    enabled: Bool = True
    for_s: Annotated[float, duration(0, 7 * 86400)] = 0.0

    # The condition's name and its keys, set by the model made for it below.
    name: ClassVar[str] = ""
    param_names: ClassVar[tuple[str, ...]] = ()

    @property
    def params(self) -> tuple[tuple[str, Any], ...]:
        return tuple((key, getattr(self, key)) for key in self.param_names)

    def get(self, key: str) -> Any:
        if key not in self.param_names:
            raise KeyError(key)
        return getattr(self, key)


def _param_type(param: Param) -> tuple[Any, Any]:
    """The annotated type and the default of one tunable key."""
    if param.kind == "duration":
        return Annotated[float, duration(param.lo, param.hi)], parse_duration(param.default)
    if param.kind == "choice":
        return Annotated[str, choice(*param.choices)], param.default
    if param.kind == "int":
        return Annotated[int, int_range(int(param.lo), int(param.hi))], param.default
    number = toml_value(to_number_range(param.lo, param.hi), (int, float))
    return Annotated[float, number], float(param.default)


def _utilization_levels(rule: Any) -> Any:
    if rule.warning_pct > rule.critical_pct:
        raise problem("warning_pct", "must not exceed critical_pct")
    return rule


# Checks across the keys of one condition.
_CHECKS = {"utilization": _utilization_levels}


def _rule_model(name: str) -> type[AlertRule]:
    spec = CONDITIONS[name]
    fields: dict[str, Any] = {
        key: (annotation, default)
        for key, (annotation, default) in ((k, _param_type(p)) for k, p in spec.params.items())
    }
    fields["for_s"] = (Annotated[float, duration(0, 7 * 86400)], spec.for_s)
    validators = {}
    if name in _CHECKS:
        validators["check"] = model_validator(mode="after")(_CHECKS[name])
    model = create_model(
        f"AlertRule_{name}", __base__=AlertRule,
        __validators__=validators,  # type: ignore[arg-type]
        **fields)
    model.name = name
    model.param_names = tuple(spec.params)
    return model


class AlertsConfig(Section):
    enabled: Bool = True
    unknown_key_reason: ClassVar[str] = f"unknown condition (known: {', '.join(CONDITIONS)})"

    @property
    def rules(self) -> tuple[AlertRule, ...]:
        return tuple(getattr(self, name) for name in CONDITIONS)

    def rule(self, name: str) -> AlertRule:
        rule: AlertRule = getattr(self, name)
        return rule


if TYPE_CHECKING:
    AlertsTable = AlertsConfig
else:
    # One field per condition, named as in the file; absent tables take every default.
    _RULES = {name: _rule_model(name) for name in CONDITIONS}
    AlertsTable = create_model(
        "AlertsTable", __base__=AlertsConfig,
        **{name: (model, Field(default_factory=model)) for name, model in _RULES.items()},
    )
