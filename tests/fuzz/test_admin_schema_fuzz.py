"""Schemathesis against the admin API's own OpenAPI document (only the ``/admin`` paths).

The document is the app's ``/openapi.json`` (``FastAPI.openapi()``, which needs no lifespan, so the
operations are known at collection time). Each operation is one hypothesis test: schemathesis's strategy
for it, positive (valid by the schema) and negative (invalid) cases, sent with the bearer token to the
real app over HTTP, and checked with schemathesis's ``not_a_server_error`` and
``response_schema_conformance``. Requests go through ``Case.call`` (requests) in a worker thread, so
the app keeps serving in the module's event loop meanwhile.
"""

from __future__ import annotations

import asyncio
import tempfile
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio
import schemathesis
from hypothesis import given
from hypothesis import strategies as st
from pydantic import SecretStr
from schemathesis import GenerationMode
from schemathesis.checks import not_a_server_error, response_schema_conformance
from schemathesis.core.result import Ok
from schemathesis.schemas import APIOperation

from core.app import create_app
from tests.apphost import Served, app_settings, serving
from tests.fuzz.conftest import budget, clean_environment, record

pytestmark = [pytest.mark.asyncio(loop_scope="module"), pytest.mark.serial]

TOKEN = "fuzz-admin-token-0123456789abcdef"
AUTH = {"Authorization": f"Bearer {TOKEN}"}


def _settings(folder: Path) -> Any:
    with clean_environment(folder):
        return app_settings(folder / "data", admin_token=SecretStr(TOKEN))


def _admin_operations() -> dict[str, APIOperation[Any, Any, Any, Any]]:
    """The /admin operations of the app's OpenAPI document, by label (``GET /admin/customers``)."""
    with tempfile.TemporaryDirectory() as folder:
        document = create_app(_settings(Path(folder))).openapi()
    schema = schemathesis.openapi.from_dict(document).include(path_regex="^/admin/")
    operations = []
    for result in schema.get_all_operations():
        assert isinstance(result, Ok), f"the admin OpenAPI document is invalid: {result!r}"
        operations.append(result.ok())
    return {operation.label: operation for operation in operations}


OPERATIONS = _admin_operations()


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def served(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Served]:
    folder = tmp_path_factory.mktemp("admin-fuzz")
    async with serving(_settings(folder)) as app:
        yield app


async def test_every_admin_route_is_fuzzed() -> None:
    assert len(OPERATIONS) >= 10, sorted(OPERATIONS)


@pytest.mark.parametrize("label", sorted(OPERATIONS))
@budget(25)
@given(mode=st.sampled_from([GenerationMode.POSITIVE, GenerationMode.NEGATIVE]), data=st.data())
async def test_admin_operation_answers_without_5xx_and_as_its_schema_says(
    served: Served, label: str, mode: GenerationMode, data: st.DataObject
) -> None:
    case = data.draw(OPERATIONS[label].as_strategy(generation_mode=mode), label="case")
    if mode is GenerationMode.POSITIVE:  # a valid call carries the token; a negative one may mangle it
        case.headers.update(AUTH)
    response = await asyncio.to_thread(case.call, base_url=served.url, timeout=30)
    record(f"admin {label}", response.status_code)
    case.validate_response(response, checks=[not_a_server_error, response_schema_conformance])
