"""Settings: the contract's names, SecretStr secrets, partial channels refused with the setting named."""

from __future__ import annotations

from pathlib import Path

import pytest

from core.errors import ConfigError
from core.settings import Settings


def test_defaults_are_the_embedded_default() -> None:
    settings = Settings()
    settings.check()
    assert settings.data_dir == Path(".threadline")
    assert settings.resolved_database_url.startswith("sqlite+aiosqlite:///")
    assert settings.resolved_database_url.endswith(".threadline/threadline.db")
    assert settings.memory.backend == "local"
    assert settings.llm.configured is False
    assert settings.enabled_channels() == []


def test_nested_environment_names(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("THREADLINE_DATA_DIR", "/srv/tl")
    monkeypatch.setenv("THREADLINE_LLM__API_KEY", "sk-test")
    monkeypatch.setenv("THREADLINE_LLM__BASE_URL", "http://127.0.0.1:9/v1")
    monkeypatch.setenv("THREADLINE_LLM__MODEL", "llama3")
    monkeypatch.setenv("THREADLINE_MEMORY__BACKEND", "platform")
    monkeypatch.setenv("THREADLINE_MEMORY__API_KEY", "m0-test")
    monkeypatch.setenv("THREADLINE_MEMORY__HOST", "http://127.0.0.1:9")
    monkeypatch.setenv("THREADLINE_TELEGRAM__BOT_TOKEN", "123:abc")
    monkeypatch.setenv("THREADLINE_TELEGRAM__SECRET_TOKEN", "s3cret")
    settings = Settings()
    settings.check()
    assert settings.data_dir == Path("/srv/tl")
    assert settings.llm.configured and settings.llm.model == "llama3"
    assert settings.llm.base_url == "http://127.0.0.1:9/v1"
    assert settings.memory.backend == "platform"
    assert settings.enabled_channels() == ["telegram"]


def test_vendor_key_fallbacks(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OPENAI_API_KEY", "sk-vendor")
    monkeypatch.setenv("MEM0_API_KEY", "m0-vendor")
    settings = Settings()
    assert settings.llm.api_key is not None and settings.llm.api_key.get_secret_value() == "sk-vendor"
    assert settings.memory.api_key is not None and settings.memory.api_key.get_secret_value() == "m0-vendor"
    monkeypatch.setenv("THREADLINE_LLM__API_KEY", "sk-own")
    assert Settings().llm.api_key.get_secret_value() == "sk-own"  # type: ignore[union-attr]


def test_secrets_never_in_repr(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("THREADLINE_LLM__API_KEY", "sk-very-secret-value")
    monkeypatch.setenv("THREADLINE_ADMIN_TOKEN", "admin-very-secret")
    monkeypatch.setenv("THREADLINE_SLACK__BOT_TOKEN", "xoxb-very-secret")
    settings = Settings()
    text = repr(settings) + str(settings) + settings.model_dump_json()
    for secret in ("sk-very-secret-value", "admin-very-secret", "xoxb-very-secret"):
        assert secret not in text


@pytest.mark.parametrize(
    ("given", "missing"),
    [
        ({"THREADLINE_SLACK__BOT_TOKEN": "xoxb-1"}, "THREADLINE_SLACK__SIGNING_SECRET"),
        ({"THREADLINE_SLACK__SIGNING_SECRET": "abc"}, "THREADLINE_SLACK__BOT_TOKEN"),
        ({"THREADLINE_TELEGRAM__BOT_TOKEN": "1:a"}, "THREADLINE_TELEGRAM__SECRET_TOKEN"),
        (
            {"THREADLINE_TWILIO__ACCOUNT_SID": "AC1", "THREADLINE_TWILIO__AUTH_TOKEN": "t"},
            "THREADLINE_TWILIO__FROM_NUMBER",
        ),
        ({"THREADLINE_EMAIL__SMTP_HOST": "127.0.0.1"}, "THREADLINE_EMAIL__ADDRESS"),
        ({"THREADLINE_EMAIL__ADDRESS": "help@example.com"}, "THREADLINE_EMAIL__SMTP_HOST"),
        ({"THREADLINE_MEMORY__BACKEND": "platform"}, "THREADLINE_MEMORY__API_KEY"),
    ],
)
def test_partial_configuration_refuses_naming_the_setting(
    monkeypatch: pytest.MonkeyPatch, given: dict[str, str], missing: str
) -> None:
    for name, value in given.items():
        monkeypatch.setenv(name, value)
    with pytest.raises(ConfigError) as caught:
        Settings().check()
    assert caught.value.setting == missing
    assert missing in str(caught.value)


def test_sms_needs_the_public_url(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("THREADLINE_TWILIO__ACCOUNT_SID", "AC1")
    monkeypatch.setenv("THREADLINE_TWILIO__AUTH_TOKEN", "t")
    monkeypatch.setenv("THREADLINE_TWILIO__FROM_NUMBER", "+15550001111")
    with pytest.raises(ConfigError, match="THREADLINE_PUBLIC_BASE_URL"):
        Settings().check()


def test_dotenv_is_read(tmp_path: Path) -> None:
    (tmp_path / ".env").write_text("THREADLINE_DEFAULT_REGION=GB\nTHREADLINE_WORKER__CONCURRENCY=3\n")
    settings = Settings()
    assert settings.default_region == "GB"
    assert settings.worker.concurrency == 3
