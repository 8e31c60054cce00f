"""Reading a file: TOML into the root model, pydantic's errors into `FILE: key.path: reason`.

Every problem of a file is reported at once, one line each; nothing is applied unless the
whole file is valid. The reasons are those of agent/config/types.py (and of the few checks
across keys); pydantic's own texts only remain for what those do not cover.
"""

from __future__ import annotations

import os
import tomllib
import typing
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from agent.config.base import Problems, Section
from agent.config.carriers import carrier_names
from agent.config.root import Config, root_model

DEFAULT_CONFIG_PATH = Path("/etc/egress-agent/agent.toml")


class ConfigError(Exception):
    """All problems of one file; str() is one `FILE: key.path: reason` line per problem."""

    def __init__(self, path: str, problems: list[tuple[str, str]]) -> None:
        self.path = path
        self.problems = problems
        super().__init__("\n".join(f"{path}: {key}: {reason}" for key, reason in problems))


def _key_path(loc: tuple[int | str, ...] | list[int | str]) -> str:
    text = ""
    for part in loc:
        if isinstance(part, int):
            text += f"[{part}]"
        elif part:
            text += f".{part}" if text else str(part)
    return text


def _section_in(annotation: Any) -> type[Section] | None:
    """The table model inside a field's type (through Optional, Annotated, tuple)."""
    if isinstance(annotation, type) and issubclass(annotation, Section):
        return annotation
    for arg in typing.get_args(annotation):
        found = _section_in(arg)
        if found is not None:
            return found
    return None


def _table_at(model: type[Section], loc: tuple[int | str, ...]) -> type[Section] | None:
    current: type[Section] | None = model
    for part in loc:
        if isinstance(part, int):
            continue
        if current is None:
            return None
        field = next((f for name, f in current.model_fields.items()
                      if (f.alias or name) == part), None)
        current = _section_in(field.annotation) if field is not None else None
    return current


def problems_of(error: ValidationError, model: type[Section]) -> list[tuple[str, str]]:
    """pydantic's errors as (key path, reason), in the order found."""
    problems: list[tuple[str, str]] = []
    for item in error.errors(include_url=False):
        loc = tuple(item["loc"])
        kind = item["type"]
        cause = (item.get("ctx") or {}).get("error")
        if isinstance(cause, Problems):
            problems += [(_key_path((*loc, key)), reason) for key, reason in cause.problems]
        elif kind in ("value_error", "assertion_error") and cause is not None:
            problems.append((_key_path(loc), str(cause)))
        elif kind == "missing":
            problems.append((_key_path(loc), "required key is missing"))
        elif kind == "extra_forbidden":
            table = _table_at(model, loc[:-1])
            reason = table.unknown_key_reason if table is not None else "unknown key"
            problems.append((_key_path(loc), reason))
        elif kind in ("model_type", "model_attributes_type", "dict_type"):
            problems.append((_key_path(loc), f"expected a table, got "
                                              f"{type(item['input']).__name__}"))
        else:
            problems.append((_key_path(loc), item["msg"]))
    return problems


def parse_config(data: dict[str, Any], path: str = "<config>") -> Config:
    """Validate a parsed TOML document; raises ConfigError listing every problem."""
    model = root_model()
    context = {"toml": True, "names": {}, "carrier_names": carrier_names(data)}
    try:
        config = model.model_validate(data, context=context, by_alias=True, by_name=False)
    except ValidationError as exc:
        raise ConfigError(path, problems_of(exc, model)) from None
    config._path = path
    return config


def default_config_path() -> Path:
    env = os.environ.get("EGRESS_AGENT_CONFIG")
    return Path(env) if env else DEFAULT_CONFIG_PATH


def load_config(path: Path | str | None = None) -> Config:
    """Read and validate a config file; every failure is a ConfigError."""
    file_path = Path(path) if path is not None else default_config_path()
    try:
        raw = file_path.read_bytes()
    except OSError as exc:
        raise ConfigError(str(file_path), [("(file)", exc.strerror or str(exc))]) from None
    try:
        data = tomllib.loads(raw.decode("utf-8"))
    except UnicodeDecodeError:
        raise ConfigError(str(file_path), [("(file)", "not UTF-8 text")]) from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(str(file_path), [("(toml)", str(exc))]) from None
    return parse_config(data, str(file_path))


def secret_file_keys(config: Config) -> dict[str, str]:
    """The files holding secrets, as path text → the key naming them."""
    keys = {}
    if config.outputs.influxdb and config.outputs.influxdb.token_file:
        keys[str(config.outputs.influxdb.token_file)] = "outputs.influxdb.token_file"
    if config.outputs.influxdb_v1 and config.outputs.influxdb_v1.password_file:
        keys[str(config.outputs.influxdb_v1.password_file)] = "outputs.influxdb_v1.password_file"
    return keys


def secret_file_warnings(config: Config) -> list[str]:
    """Files holding secrets (or the config itself) that other users can read."""
    paths = [Path(config.path), *map(Path, secret_file_keys(config))]
    warnings = []
    for index, path in enumerate(paths):
        try:
            mode = path.stat().st_mode
        except OSError:
            continue
        if mode & 0o004 and index > 0:
            warnings.append(f"{path}: holds a secret and is readable by other users (chmod 600)")
    return warnings
