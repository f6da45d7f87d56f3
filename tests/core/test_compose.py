"""The composition root (``core.compose``): every service object of a process built once, and nothing left
open behind a start that fails."""

from __future__ import annotations

from pathlib import Path

import pytest

from core.compose import Services, wire
from core.errors import ConfigError
from tests.apphost import app_settings, serving
from tests.core.harness import make_settings
from tests.fakes.recording import RecordingSender


async def test_the_hub_runs_on_the_services_it_was_wired_with(tmp_path: Path) -> None:
    wiring = await wire(make_settings(tmp_path), senders={"telegram": RecordingSender("telegram")})
    try:
        services, hub = wiring.services, wiring.hub
        assert hub.db is services.db and hub.memory is services.memory
    finally:
        await wiring.hub.stop()


async def test_the_admin_api_uses_the_hubs_services(tmp_path: Path) -> None:
    """One database, one memory store and one ``IdentityLinks`` per process: the admin API's are the
    hub's (two IdentityLinks on one database once reported a running move as pending)."""
    async with serving(app_settings(tmp_path)) as served:
        admin = served.app.state.admin
        assert isinstance(admin, Services)
        assert admin.db is served.hub.db and admin.memory is served.hub.memory


async def test_a_start_that_fails_after_the_store_opened_closes_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    closed: list[Services] = []
    real_aclose = Services.aclose

    async def recording_aclose(self: Services) -> None:
        closed.append(self)
        await real_aclose(self)

    def no_model(_: object) -> None:
        raise ConfigError("THREADLINE_LLM__MODEL: refused for the test", setting="THREADLINE_LLM__MODEL")

    monkeypatch.setattr(Services, "aclose", recording_aclose)
    monkeypatch.setattr("core.agent.llm.build_chat_model", no_model)
    with pytest.raises(ConfigError):
        await wire(make_settings(tmp_path), senders={})
    assert len(closed) == 1  # the database and the memory store it had opened are closed again
