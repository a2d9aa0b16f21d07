"""Settings: every one an environment variable (SPEC section 6), validated when built, errors naming the value."""

from __future__ import annotations

import pytest

from conveyor import ConfigError, Conveyor, Settings
from conveyor.settings import parse_duration, parse_queues


def test_defaults_serve_a_laptop() -> None:
    s = Settings.from_env({})
    assert s.database_url == "sqlite:///./conveyor.db"
    assert (s.concurrency, s.queues, s.lease_s, s.shutdown_grace_s) == (10, None, 30.0, 30.0)
    assert (s.max_retries, s.retention_days, s.api_token) == (3, 7.0, None)
    assert (s.data_dir, s.max_upload_mb, s.crawl_allow_private) == ("./conveyor-data", 50, False)


def test_every_variable_is_read() -> None:
    s = Settings.from_env(
        {
            "CONVEYOR_DATABASE_URL": "sqlite:////tmp/x.db",
            "CONVEYOR_CONCURRENCY": "4",
            "CONVEYOR_QUEUES": "a, b",
            "CONVEYOR_LEASE_S": "2.5",
            "CONVEYOR_SHUTDOWN_GRACE_S": "0",
            "CONVEYOR_MAX_RETRIES": "0",
            "CONVEYOR_RETENTION_DAYS": "0.5",
            "CONVEYOR_API_TOKEN": "secret",
            "CONVEYOR_DATA_DIR": "/data",
            "CONVEYOR_MAX_UPLOAD_MB": "5",
            "CONVEYOR_CRAWL_ALLOW_PRIVATE": "yes",
            "CONVEYOR_POLL_INTERVAL_S": "0.05",
        }
    )
    assert s.database_url == "sqlite:////tmp/x.db"
    assert (s.concurrency, s.queues, s.lease_s, s.shutdown_grace_s) == (4, ("a", "b"), 2.5, 0.0)
    assert (s.max_retries, s.retention_days, s.api_token) == (0, 0.5, "secret")
    assert (s.data_dir, s.max_upload_mb, s.crawl_allow_private, s.poll_interval_s) == ("/data", 5, True, 0.05)


def test_overrides_win_over_the_environment_but_none_does_not() -> None:
    s = Settings.from_env({"CONVEYOR_CONCURRENCY": "4"}, concurrency=8, lease_s=None)
    assert s.concurrency == 8 and s.lease_s == 30.0
    assert s.with_changes(concurrency=None, lease_s=3.0) == Settings.from_env({}, concurrency=8, lease_s=3.0)


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"CONVEYOR_CONCURRENCY": "lots"}, "CONVEYOR_CONCURRENCY='lots' is not a valid int"),
        ({"CONVEYOR_CONCURRENCY": "0"}, "concurrency must be at least 1, got 0"),
        ({"CONVEYOR_LEASE_S": "0"}, "lease must be positive"),
        ({"CONVEYOR_LEASE_S": "nan"}, "lease must be positive"),
        ({"CONVEYOR_LEASE_S": "inf"}, "lease must be positive"),
        ({"CONVEYOR_SHUTDOWN_GRACE_S": "nan"}, "shutdown grace must not be negative"),
        ({"CONVEYOR_RETENTION_DAYS": "nan"}, "retention must not be negative"),
        ({"CONVEYOR_POLL_INTERVAL_S": "inf"}, "poll interval must be positive"),
        ({"CONVEYOR_LEASE_S": "1e"}, "CONVEYOR_LEASE_S='1e'"),
        ({"CONVEYOR_SHUTDOWN_GRACE_S": "-1"}, "shutdown grace must not be negative"),
        ({"CONVEYOR_MAX_RETRIES": "-2"}, "max retries must not be negative, got -2"),
        ({"CONVEYOR_RETENTION_DAYS": "-1"}, "retention must not be negative"),
        ({"CONVEYOR_MAX_UPLOAD_MB": "0"}, "max upload must be at least 1 MB"),
        ({"CONVEYOR_CRAWL_ALLOW_PRIVATE": "maybe"}, "invalid boolean 'maybe'"),
        ({"CONVEYOR_POLL_INTERVAL_S": "0"}, "poll interval must be positive"),
    ],
)
def test_bad_values_are_refused_naming_them(env: dict[str, str], message: str) -> None:
    with pytest.raises(ConfigError) as info:
        Settings.from_env(env)
    assert message in str(info.value)


def test_settings_are_frozen() -> None:
    s = Settings()
    with pytest.raises(AttributeError):
        s.concurrency = 3  # type: ignore[misc]


@pytest.mark.parametrize(
    ("text", "seconds"),
    [("30s", 30.0), ("15m", 900.0), ("2h", 7200.0), ("7d", 604800.0), ("0d", 0.0), ("45", 45.0), (" 1.5 h ", 5400.0)],
)
def test_durations(text: str, seconds: float) -> None:
    assert parse_duration(text) == seconds


@pytest.mark.parametrize("text", ["", "-5", "-5s", "5w", "soon", "1h30m", "s"])
def test_bad_durations(text: str) -> None:
    with pytest.raises(ConfigError, match="invalid duration"):
        parse_duration(text)


def test_queues() -> None:
    assert parse_queues("a,b , c,") == ("a", "b", "c")
    assert parse_queues("") is None and parse_queues("all") is None and parse_queues("*") is None
    assert Settings.from_env({"CONVEYOR_QUEUES": "all"}).queues is None


def test_the_app_reads_the_environment(monkeypatch: pytest.MonkeyPatch, tmp_path: object) -> None:
    monkeypatch.setenv("CONVEYOR_DATABASE_URL", f"sqlite:///{tmp_path}/env.db")
    monkeypatch.setenv("CONVEYOR_MAX_RETRIES", "1")
    app = Conveyor()
    assert app.database_url == f"sqlite:///{tmp_path}/env.db"
    assert app.settings.max_retries == 1
    assert Conveyor("sqlite:///other.db").database_url == "sqlite:///other.db"  # an explicit URL wins
    with app:
        assert app.enqueue("demo.sleep", {}).max_retries == 1
