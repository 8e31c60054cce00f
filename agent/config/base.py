"""What every config table shares: the pydantic base model and the problem types.

A table is a frozen pydantic model. Its Python names carry units (`interval_s`); the TOML
key is the name without the `_s` suffix (`interval`), made once here by the alias
generator, so no table spells its aliases by hand. Values are converted by the validators
of agent/config/types.py, which give the error texts operators already know.

TOML is read by alias only (a file saying `interval_s` gets "unknown key"); Python code
and tests build tables by their field names, with values already converted.
"""

from __future__ import annotations

from typing import Any, ClassVar

from pydantic import BaseModel, ConfigDict, ValidationError, ValidationInfo
from pydantic_core import InitErrorDetails, PydanticCustomError


def toml_key(name: str) -> str:
    """The TOML key of a field: its name without the unit suffix of seconds."""
    return name.removesuffix("_s")


class Section(BaseModel):
    """One TOML table."""

    model_config = ConfigDict(
        extra="forbid",
        frozen=True,
        alias_generator=toml_key,
        validate_by_name=True,
        validate_by_alias=True,
    )

    # The reason given for a key this table does not know (alerts names its conditions).
    unknown_key_reason: ClassVar[str] = "unknown key"


class Problems(ValueError):
    """Problems a table finds across its keys (raised from a model validator): each is
    (key inside the table, reason); an empty key means the table itself."""

    def __init__(self, problems: list[tuple[str, str]]) -> None:
        super().__init__("; ".join(reason for _, reason in problems))
        self.problems = problems


def problem(key: str, reason: str) -> Problems:
    return Problems([(key, reason)])


def validate_with(handler: Any, data: Any, problems: list[tuple[str, str]]) -> Any:
    """For a wrap model validator: the table validated by `handler`, with `problems` (found
    on the raw table, as (key, reason)) reported beside whatever else is wrong with it."""
    details = [InitErrorDetails(type=PydanticCustomError("table", reason),
                                loc=(key,) if key else (), input=data)
               for key, reason in problems]
    try:
        model = handler(data)
    except ValidationError as exc:
        errors: list[Any] = exc.errors()
        raise ValidationError.from_exception_data(exc.title, [*errors, *details]) from None
    if details:
        raise ValidationError.from_exception_data(type(model).__name__, details)
    return model


def from_toml(info: ValidationInfo) -> bool:
    """True while a TOML document is validated (agent/config/loading.py sets the context);
    false when Python code builds a table with converted values."""
    context: Any = info.context
    return bool(context and context.get("toml"))


def context_value(info: ValidationInfo, key: str, default: Any = None) -> Any:
    context: Any = info.context
    return context.get(key, default) if context else default
