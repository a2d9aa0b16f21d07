"""Settings: every one an environment variable (SPEC section 6), validated when built."""

from __future__ import annotations

import math
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from typing import Any

from conveyor.errors import ConfigError

DEFAULT_DATABASE_URL = "sqlite:///./conveyor.db"
DEFAULT_CONCURRENCY = 10
DEFAULT_LEASE_S = 30.0
DEFAULT_SHUTDOWN_GRACE_S = 30.0
DEFAULT_MAX_RETRIES = 3
DEFAULT_RETENTION_DAYS = 7.0
DEFAULT_DATA_DIR = "./conveyor-data"
DEFAULT_MAX_UPLOAD_MB = 50
DEFAULT_POLL_INTERVAL_S = 1.0
DEFAULT_CONNECT_TIMEOUT_S = 5.0  # how long opening a PostgreSQL connection may take before it is an error
DEFAULT_MAX_BODY_MB = 16  # the largest JSON request body the API reads (uploads have CONVEYOR_MAX_UPLOAD_MB)

_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([smhd]?)\s*$")
_UNIT_S = {"": 1.0, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0}


def parse_duration(text: str) -> float:
    """Seconds in a duration written `30s`, `15m`, `2h`, `7d` (a bare number is seconds)."""
    match = _DURATION.match(text)
    if not match and text.strip().startswith("-"):
        raise ConfigError(f"invalid duration {text!r}: it must not be negative")
    if not match:
        raise ConfigError(f"invalid duration {text!r}: write it like 30s, 15m, 2h or 7d")
    return float(match.group(1)) * _UNIT_S[match.group(2)]


def _truthy(text: str) -> bool:
    value = text.strip().lower()
    if value in {"1", "true", "yes", "on"}:
        return True
    if value in {"0", "false", "no", "off", ""}:
        return False
    raise ConfigError(f"invalid boolean {text!r}: use true or false")


def _number(name: str, text: str, kind: type[int] | type[float]) -> Any:
    try:
        return kind(text)
    except ValueError:
        raise ConfigError(f"{name}={text!r} is not a valid {kind.__name__}") from None


@dataclass(frozen=True, slots=True)
class Settings:
    database_url: str = DEFAULT_DATABASE_URL
    concurrency: int = DEFAULT_CONCURRENCY
    queues: tuple[str, ...] | None = None
    lease_s: float = DEFAULT_LEASE_S
    shutdown_grace_s: float = DEFAULT_SHUTDOWN_GRACE_S
    max_retries: int = DEFAULT_MAX_RETRIES
    retention_days: float = DEFAULT_RETENTION_DAYS
    api_token: str | None = None
    data_dir: str = DEFAULT_DATA_DIR
    max_upload_mb: int = DEFAULT_MAX_UPLOAD_MB
    crawl_allow_private: bool = False
    webhook_allow_private: bool = False
    webhook_secret: str | None = None  # signs deliveries to jobs' own webhook_url (subscriptions have their own)
    poll_interval_s: float = DEFAULT_POLL_INTERVAL_S
    connect_timeout_s: float = DEFAULT_CONNECT_TIMEOUT_S
    max_body_mb: int = DEFAULT_MAX_BODY_MB
    extra: Mapping[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.concurrency < 1:
            raise ConfigError(f"concurrency must be at least 1, got {self.concurrency}")
        if not 0 < self.lease_s < math.inf:  # NaN too: a lease that never expires loses dead workers' jobs
            raise ConfigError(f"lease must be positive, got {self.lease_s}s")
        if not self.shutdown_grace_s >= 0:
            raise ConfigError(f"shutdown grace must not be negative, got {self.shutdown_grace_s}s")
        if self.max_retries < 0:
            raise ConfigError(f"max retries must not be negative, got {self.max_retries}")
        if not self.retention_days >= 0:
            raise ConfigError(f"retention must not be negative, got {self.retention_days} days")
        if self.max_upload_mb < 1:
            raise ConfigError(f"max upload must be at least 1 MB, got {self.max_upload_mb}")
        if not 0 < self.poll_interval_s < math.inf:
            raise ConfigError(f"poll interval must be positive, got {self.poll_interval_s}s")
        if not 0 < self.connect_timeout_s <= 3600:
            raise ConfigError(f"connect timeout must be between 0 and 3600 s, got {self.connect_timeout_s}s")
        if self.webhook_secret is not None and not self.webhook_secret.startswith("whsec_"):
            raise ConfigError("CONVEYOR_WEBHOOK_SECRET must be a Standard Webhooks secret: whsec_ + base64")
        if not 1 <= self.max_body_mb <= 1024:
            raise ConfigError(f"max body must be 1 to 1024 MB, got {self.max_body_mb}")

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None, **overrides: Any) -> Settings:
        env = os.environ if env is None else env
        values: dict[str, Any] = {}
        if "CONVEYOR_DATABASE_URL" in env:
            values["database_url"] = env["CONVEYOR_DATABASE_URL"]
        if "CONVEYOR_CONCURRENCY" in env:
            values["concurrency"] = _number("CONVEYOR_CONCURRENCY", env["CONVEYOR_CONCURRENCY"], int)
        if env.get("CONVEYOR_QUEUES", "").strip() not in {"", "all", "*"}:
            values["queues"] = parse_queues(env["CONVEYOR_QUEUES"])
        if "CONVEYOR_LEASE_S" in env:
            values["lease_s"] = _number("CONVEYOR_LEASE_S", env["CONVEYOR_LEASE_S"], float)
        if "CONVEYOR_SHUTDOWN_GRACE_S" in env:
            values["shutdown_grace_s"] = _number("CONVEYOR_SHUTDOWN_GRACE_S", env["CONVEYOR_SHUTDOWN_GRACE_S"], float)
        if "CONVEYOR_MAX_RETRIES" in env:
            values["max_retries"] = _number("CONVEYOR_MAX_RETRIES", env["CONVEYOR_MAX_RETRIES"], int)
        if "CONVEYOR_RETENTION_DAYS" in env:
            values["retention_days"] = _number("CONVEYOR_RETENTION_DAYS", env["CONVEYOR_RETENTION_DAYS"], float)
        if env.get("CONVEYOR_API_TOKEN"):
            values["api_token"] = env["CONVEYOR_API_TOKEN"]
        if "CONVEYOR_DATA_DIR" in env:
            values["data_dir"] = env["CONVEYOR_DATA_DIR"]
        if "CONVEYOR_MAX_UPLOAD_MB" in env:
            values["max_upload_mb"] = _number("CONVEYOR_MAX_UPLOAD_MB", env["CONVEYOR_MAX_UPLOAD_MB"], int)
        if "CONVEYOR_CRAWL_ALLOW_PRIVATE" in env:
            values["crawl_allow_private"] = _truthy(env["CONVEYOR_CRAWL_ALLOW_PRIVATE"])
        if "CONVEYOR_WEBHOOK_ALLOW_PRIVATE" in env:
            values["webhook_allow_private"] = _truthy(env["CONVEYOR_WEBHOOK_ALLOW_PRIVATE"])
        if env.get("CONVEYOR_WEBHOOK_SECRET"):
            values["webhook_secret"] = env["CONVEYOR_WEBHOOK_SECRET"]
        if "CONVEYOR_POLL_INTERVAL_S" in env:
            values["poll_interval_s"] = _number("CONVEYOR_POLL_INTERVAL_S", env["CONVEYOR_POLL_INTERVAL_S"], float)
        if "CONVEYOR_CONNECT_TIMEOUT_S" in env:
            timeout = env["CONVEYOR_CONNECT_TIMEOUT_S"]
            values["connect_timeout_s"] = _number("CONVEYOR_CONNECT_TIMEOUT_S", timeout, float)
        if "CONVEYOR_MAX_BODY_MB" in env:
            values["max_body_mb"] = _number("CONVEYOR_MAX_BODY_MB", env["CONVEYOR_MAX_BODY_MB"], int)
        values.update({k: v for k, v in overrides.items() if v is not None})
        return cls(**values)

    def with_changes(self, **changes: Any) -> Settings:
        return replace(self, **{k: v for k, v in changes.items() if v is not None})


def parse_queues(text: str) -> tuple[str, ...] | None:
    """`a,b` -> ("a", "b"); empty, `all` or `*` -> None (every queue)."""
    names = tuple(q.strip() for q in text.split(",") if q.strip())
    if not names or names in {("all",), ("*",)}:
        return None
    return names
