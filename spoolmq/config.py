"""Configuration: DESIGN.md's defaults, then a TOML file, then SPOOLMQ_* env vars, then CLI flags.

Owns the one `Config` value the process is assembled from. It must not open
sockets or files other than the TOML file it is pointed at.
"""

from __future__ import annotations

import dataclasses
import os
import re
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

DAY_S = 86_400.0
MIB = 1024 * 1024


class ConfigError(ValueError):
    """A setting has a value that cannot be used; the message names the setting."""


@dataclass(frozen=True, slots=True)
class TokenConfig:
    """A bearer token, the topic patterns it may use and its rights."""

    token: str
    topics: tuple[str, ...] = ("*",)
    rights: tuple[str, ...] = ("produce", "consume", "admin")


@dataclass(frozen=True, slots=True)
class Config:
    host: str = "127.0.0.1"
    http_port: int = 8080
    tcp_port: int = 7070
    dashboard_port: int = 3000
    data_dir: Path = Path("./data")
    log_dir: Path = Path("./logs")
    log_level: str = "INFO"
    durability: str = "sync"  # "sync" | "interval:<ms>" | "none"
    segment_bytes: int = 64 * MIB
    retention_s: float = 7 * DAY_S
    retention_bytes: int = 10 * 1024 * MIB
    visibility_timeout_s: float = 30.0
    max_deliveries: int = 10
    max_message_bytes: int = 1 * MIB
    default_topic: str = "default"
    default_group: str = "default"
    idle_group_expiry_s: float = 7 * DAY_S
    max_inflight_per_group: int = 10_000
    active_client_window_s: float = 30.0
    dedup_window_s: float = 120.0
    tls_cert: Path | None = None
    tls_key: Path | None = None
    insecure: bool = False
    tokens: tuple[TokenConfig, ...] = field(default_factory=tuple)

    def validate(self) -> Config:
        """Return self when every setting is usable; else raise ConfigError naming one."""
        parse_durability(self.durability)
        for name in ("http_port", "tcp_port", "dashboard_port"):
            port = getattr(self, name)
            if not 0 <= port <= 65535:
                raise ConfigError(f"{name}: {port} is not a TCP port")
        positive = ("segment_bytes", "retention_s", "retention_bytes", "visibility_timeout_s",
                    "max_deliveries", "max_message_bytes", "max_inflight_per_group")
        for name in positive:
            if getattr(self, name) <= 0:
                raise ConfigError(f"{name}: must be positive, got {getattr(self, name)!r}")
        if (self.tls_cert is None) != (self.tls_key is None):
            raise ConfigError("tls_cert and tls_key must be given together")
        return self


_DURABILITY = re.compile(r"^(sync|none|interval:(\d+))$")


def parse_durability(value: str) -> tuple[str, float]:
    """Return (mode, interval_seconds) for "sync", "none" or "interval:<ms>"; raise ConfigError."""
    m = _DURABILITY.match(value)
    if not m:
        raise ConfigError(f"durability: {value!r} is not one of sync, none, interval:<ms>")
    if m.group(2) is not None:
        ms = int(m.group(2))
        if ms <= 0:
            raise ConfigError("durability: interval must be at least 1 ms")
        return "interval", ms / 1000.0
    return m.group(1), 0.0


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
