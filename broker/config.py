"""The settings every layer reads: one frozen `Config` with DESIGN.md's defaults.

A value type only; loading it from TOML, SPOOLMQ_* env vars and CLI flags is the
composition root's job (`spoolmq.config`). Lives here, at the broker layer, so the
broker and the gateway can take a Config without importing the composition root.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

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


