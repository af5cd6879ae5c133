from __future__ import annotations

from pathlib import Path

import pytest

from spoolmq.config import Config, ConfigError, load_config, parse_durability


def test_defaults_match_design() -> None:
    c = load_config(env={})
    assert (c.host, c.http_port, c.tcp_port, c.dashboard_port) == ("127.0.0.1", 8080, 7070, 3000)
    assert c.data_dir == Path("./data") and c.log_dir == Path("./logs")
    assert c.durability == "sync"
    assert c.visibility_timeout_s == 30.0 and c.max_deliveries == 10
    assert c.segment_bytes == 64 * 1024 * 1024
    assert c.max_message_bytes == 1024 * 1024
    assert c.max_inflight_per_group == 10_000


def test_toml_then_env_then_flags_override_in_order(tmp_path: Path) -> None:
    toml = tmp_path / "spoolmq.toml"
    toml.write_text('http_port = 9000\ntcp_port = 9001\ndurability = "interval:5"\n'
                    'data_dir = "/srv/spool"\n')
    env = {"SPOOLMQ_TCP_PORT": "9101", "SPOOLMQ_INSECURE": "true"}
    c = load_config(toml, env=env, overrides={"http_port": 9200, "host": None})
    assert c.http_port == 9200  # flag beats file
    assert c.tcp_port == 9101  # env beats file
    assert c.durability == "interval:5"  # file beats default
    assert c.data_dir == Path("/srv/spool")
    assert c.insecure is True
    assert c.host == "127.0.0.1"  # an absent flag changes nothing


def test_tokens_from_toml(tmp_path: Path) -> None:
    toml = tmp_path / "c.toml"
    toml.write_text('[[tokens]]\ntoken = "s3cret"\ntopics = ["orders.*"]\nrights = ["produce"]\n')
    c = load_config(toml, env={})
    assert c.tokens[0].token == "s3cret"
    assert c.tokens[0].topics == ("orders.*",) and c.tokens[0].rights == ("produce",)


@pytest.mark.parametrize(
    "text, message",
    [
        ("nonsense = 1\n", "unknown setting 'nonsense'"),
        ('durability = "sometimes"\n', "durability"),
        ("http_port = 70000\n", "http_port"),
        ('tcp_port = "seven"\n', "tcp_port"),
        ("max_deliveries = 0\n", "max_deliveries"),
        ('[[tokens]]\ntoken = "t"\nrights = ["root"]\n', "unknown rights"),
        ("http_port = \n", "config file"),
    ],
)
def test_bad_settings_name_the_setting(tmp_path: Path, text: str, message: str) -> None:
    toml = tmp_path / "bad.toml"
    toml.write_text(text)
    with pytest.raises(ConfigError, match=message):
        load_config(toml, env={})


def test_env_bad_value_is_named() -> None:
    with pytest.raises(ConfigError, match="http_port"):
        load_config(env={"SPOOLMQ_HTTP_PORT": "eighty"})


def test_parse_durability() -> None:
    assert parse_durability("sync") == ("sync", 0.0)
    assert parse_durability("none") == ("none", 0.0)
    assert parse_durability("interval:250") == ("interval", 0.25)
    with pytest.raises(ConfigError):
        parse_durability("interval:0")


def test_tls_needs_cert_and_key() -> None:
    with pytest.raises(ConfigError, match="tls"):
        Config(tls_cert=Path("c.pem")).validate()
