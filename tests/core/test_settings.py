"""Settings: the contract's names, SecretStr secrets, partial channels refused with the setting named."""

from __future__ import annotations

from pathlib import Path

import pytest

from core.errors import ConfigError
from core.settings import Settings, load_settings


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


# ----- a bad value is one line naming the variable --------------------------------------------------

BAD_VALUES = [
    (
        "THREADLINE_WORKER__CONCURRENCY",
        "abc",
        "THREADLINE_WORKER__CONCURRENCY: must be an integer (got 'abc')",
    ),
    ("THREADLINE_WORKER__CONCURRENCY", "0", "THREADLINE_WORKER__CONCURRENCY: must be at least 1 (got '0')"),
    (
        "THREADLINE_LOG_LEVEL",
        "LOUD",
        "THREADLINE_LOG_LEVEL: must be one of DEBUG, INFO, WARNING, ERROR, CRITICAL",
    ),
    (
        "THREADLINE_MEMORY__BACKEND",
        "foo",
        "THREADLINE_MEMORY__BACKEND: must be 'local' or 'platform' (got 'foo')",
    ),
    (
        "THREADLINE_DEFAULT_REGION",
        "ZZ",
        "THREADLINE_DEFAULT_REGION: must be a region code that has phone numbers",
    ),
    ("THREADLINE_DATABASE_URL", "garbage", "THREADLINE_DATABASE_URL: must be a database URL such as"),
    ("THREADLINE_DOCS_PUBLIC", "perhaps", "THREADLINE_DOCS_PUBLIC: must be true or false (got 'perhaps')"),
    ("THREADLINE_LLM__TIMEOUT", "soon", "THREADLINE_LLM__TIMEOUT: must be a number (got 'soon')"),
]


@pytest.mark.parametrize(("name", "value", "said"), BAD_VALUES)
def test_a_bad_value_is_a_config_error_naming_the_variable(
    monkeypatch: pytest.MonkeyPatch, name: str, value: str, said: str
) -> None:
    monkeypatch.setenv(name, value)
    with pytest.raises(ConfigError) as caught:
        load_settings()
    assert caught.value.setting == name
    assert str(caught.value).startswith(said), str(caught.value)
    assert "\n" not in str(caught.value)


def test_the_values_that_may_hold_a_secret_are_never_repeated(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("THREADLINE_DATABASE_URL", "mysql://root:hunter2@db/threadline")
    with pytest.raises(ConfigError) as caught:
        load_settings()
    assert "hunter2" not in str(caught.value) and "'mysql'" in str(caught.value)


def test_several_bad_values_are_all_named_on_one_line(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("THREADLINE_WORKER__CONCURRENCY", "abc")
    monkeypatch.setenv("THREADLINE_LOG_LEVEL", "LOUD")
    with pytest.raises(ConfigError) as caught:
        load_settings()
    text = str(caught.value)
    assert "THREADLINE_WORKER__CONCURRENCY" in text and "THREADLINE_LOG_LEVEL" in text and "\n" not in text


def test_good_values_are_normalised(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("THREADLINE_LOG_LEVEL", "debug")
    monkeypatch.setenv("THREADLINE_DEFAULT_REGION", "gb")
    monkeypatch.setenv("THREADLINE_DATABASE_URL", "postgresql+asyncpg://127.0.0.1/threadline")
    settings = load_settings()
    assert (settings.log_level, settings.default_region) == ("DEBUG", "GB")


def test_a_data_dir_under_a_file_is_refused_naming_the_setting(tmp_path: Path) -> None:
    (tmp_path / "notes.txt").write_text("a file, not a folder\n")
    for data_dir in (tmp_path / "notes.txt", tmp_path / "notes.txt" / "data"):
        with pytest.raises(ConfigError) as caught:
            Settings(data_dir=data_dir).check()
        assert caught.value.setting == "THREADLINE_DATA_DIR"
        assert str(caught.value).startswith("THREADLINE_DATA_DIR: must be a folder")
    Settings(data_dir=tmp_path / "new" / "data").check()  # not there yet: made at start


def test_the_app_refuses_a_bad_environment_naming_the_setting(monkeypatch: pytest.MonkeyPatch) -> None:
    from core.app import create_app

    monkeypatch.setenv("THREADLINE_MEMORY__BACKEND", "foo")
    with pytest.raises(ConfigError) as caught:
        create_app()
    assert caught.value.setting == "THREADLINE_MEMORY__BACKEND"


def test_a_base_url_without_a_key_says_the_hub_is_offline(monkeypatch: pytest.MonkeyPatch) -> None:
    assert Settings().llm.offline_notice is None  # nothing asked for: nothing to say
    monkeypatch.setenv("THREADLINE_LLM__BASE_URL", "http://127.0.0.1:11434/v1")
    notice = Settings().llm.offline_notice
    assert notice is not None and "offline mode" in notice
    assert "THREADLINE_LLM__BASE_URL" in notice and "THREADLINE_LLM__API_KEY" in notice
    monkeypatch.setenv("THREADLINE_LLM__API_KEY", "local")
    assert Settings().llm.offline_notice is None and Settings().llm.configured
