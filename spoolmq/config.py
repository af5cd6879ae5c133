"""Configuration loading: DESIGN.md's defaults, then a TOML file, then SPOOLMQ_* env vars,
then CLI flags.

Builds the one `Config` value (defined in `broker.config`) the process is assembled
from. Opens no sockets and no files other than the TOML file it is pointed at.
"""

from __future__ import annotations

import dataclasses
import os
import tomllib
from collections.abc import Mapping
from dataclasses import fields
from pathlib import Path
from typing import Any

from broker.config import (
    DAY_S,
    MIB,
    Config,
    ConfigError,
    TokenConfig,
    parse_durability,
)

__all__ = ["DAY_S", "MIB", "Config", "ConfigError", "TokenConfig", "load_config",
           "parse_durability"]


def _coerce(name: str, typ: Any, raw: Any) -> Any:
    """Turn a TOML or env value into the field's type; raise ConfigError naming the field."""
    try:
        if typ in (Path, "Path"):
            return Path(raw)
        if typ in ("Path | None",):
            return None if raw in (None, "") else Path(raw)
        if typ in (bool, "bool"):
            if isinstance(raw, bool):
                return raw
            text = str(raw).strip().lower()
            if text in ("1", "true", "yes", "on"):
                return True
            if text in ("0", "false", "no", "off"):
                return False
            raise ValueError(raw)
        if typ in (int, "int"):
            return int(raw)
        if typ in (float, "float"):
            return float(raw)
        if typ in (str, "str"):
            return str(raw)
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"{name}: cannot use {raw!r} ({exc})") from None
    raise ConfigError(f"{name}: cannot be set this way")


def _tokens(raw: Any) -> tuple[TokenConfig, ...]:
    if not isinstance(raw, list):
        raise ConfigError("tokens: expected a list of tables")
    out = []
    for item in raw:
        if not isinstance(item, Mapping) or not isinstance(item.get("token"), str):
            raise ConfigError("tokens: every entry needs a string 'token'")
        rights = tuple(item.get("rights", ("produce", "consume", "admin")))
        bad = set(rights) - {"produce", "consume", "admin"}
        if bad:
            raise ConfigError(f"tokens: unknown rights {sorted(bad)}")
        out.append(TokenConfig(item["token"], tuple(item.get("topics", ("*",))), rights))
    return tuple(out)


def load_config(
    path: Path | None = None,
    env: Mapping[str, str] | None = None,
    overrides: Mapping[str, Any] | None = None,
) -> Config:
    """Build the Config: defaults < TOML file < SPOOLMQ_* env vars < overrides (CLI flags).

    Raises ConfigError for unknown keys, unreadable files and unusable values.
    """
    env = os.environ if env is None else env
    types = {f.name: f.type for f in fields(Config)}
    values: dict[str, Any] = {}
    if path is None and env.get("SPOOLMQ_CONFIG"):
        path = Path(env["SPOOLMQ_CONFIG"])
    if path is not None:
        try:
            data = tomllib.loads(Path(path).read_text())
        except (OSError, tomllib.TOMLDecodeError) as exc:
            raise ConfigError(f"config file {path}: {exc}") from None
        for key, raw in data.items():
            if key not in types:
                raise ConfigError(f"config file {path}: unknown setting {key!r}")
            values[key] = _tokens(raw) if key == "tokens" else _coerce(key, types[key], raw)
    for key, typ in types.items():
        raw = env.get("SPOOLMQ_" + key.upper())
        if raw is not None and key != "tokens":
            values[key] = _coerce(key, typ, raw)
    for key, raw in (overrides or {}).items():
        if raw is None:
            continue
        if key not in types:
            raise ConfigError(f"unknown setting {key!r}")
        values[key] = _coerce(key, types[key], raw) if key != "tokens" else raw
    return dataclasses.replace(Config(), **values).validate()
