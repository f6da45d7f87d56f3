"""Signing in to the console: the form, wrong credentials, the sign-in limits, the session cookie, expiry,
sign-out, and that the admin token is no way in."""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path

import httpx
from pydantic import SecretStr
from sqlalchemy import select, update

from core.settings import ConsoleSettings
from core.store.models import OperatorSession, utcnow
from tests.apphost import Served, app_settings, serving
from tests.core.web.console.conftest import (
    ADMIN_TOKEN,
    PASSWORD,
    Browser,
    count,
    csrf_of,
    operators,
    services,
)


def session_cookie_header(response: httpx.Response) -> str:
    [cookie] = [v for v in response.headers.get_list("set-cookie") if v.startswith("threadline_console=")]
    return cookie


async def test_the_sign_in_form_has_labelled_fields_and_a_login_csrf_cookie(
    served: Served, browser: Callable[[], Browser]
) -> None:
    page = await browser().get("/console/login")
    assert page.status_code == 200
    html = page.text
    assert '<label for="login-name">Name</label>' in html
    assert 'id="login-name" name="name"' in html
    assert '<label for="login-password">Password</label>' in html
    assert 'id="login-password" name="password" type="password"' in html
    assert '<button type="submit">Sign in</button>' in html
    [login_cookie] = [
        v for v in page.headers.get_list("set-cookie") if v.startswith("threadline_console_login=")
    ]
    assert login_cookie.split(";")[0].split("=", 1)[1] == csrf_of(html)
    assert (
        "HttpOnly" in login_cookie and "SameSite=strict" in login_cookie and "Path=/console" in login_cookie
    )
    assert page.headers["content-security-policy"].startswith("default-src 'self'")
    assert page.headers["x-frame-options"] == "DENY"
    assert page.headers["cache-control"] == "no-store"
    assert page.headers["referrer-policy"] == "same-origin"


async def test_signing_in_makes_a_session_whose_token_is_stored_only_as_a_hash(
    served: Served, browser: Callable[[], Browser]
) -> None:
    await operators(served).add("ada", "admin", PASSWORD)
    ada = browser()
    response = await ada.sign_in("ada")
    assert response.status_code == 303 and response.headers["location"] == "/console/"
    cookie = session_cookie_header(response)
    assert "HttpOnly" in cookie and "SameSite=strict" in cookie and "Path=/console" in cookie
    assert "Secure" not in cookie  # http:// public URL and no setting: not secure-only
    token = cookie.split(";")[0].split("=", 1)[1]
    async with services(served).db.read() as session:
        [stored] = list(await session.scalars(select(OperatorSession)))
    assert stored.id == hashlib.sha256(token.encode()).hexdigest() and stored.id != token
    inbox = await ada.get("/console/")
    assert inbox.status_code == 200 and "ada (admin)" in inbox.text
    assert f'hx-headers=\'{{"X-CSRF-Token": "{stored.csrf}"}}\'' in inbox.text


async def test_a_wrong_password_or_name_is_401_and_creates_no_session(
    served: Served, browser: Callable[[], Browser]
) -> None:
    await operators(served).add("ada", "admin", PASSWORD)
    for name, password in (("ada", "wrong password"), ("nobody", PASSWORD), ("ada", ""), ("", "")):
        client = browser()
        response = await client.sign_in(name, password)
        assert response.status_code == 401, (name, response.text)
        assert "Wrong name or password." in response.text
        assert not [v for v in response.headers.get_list("set-cookie") if v.startswith("threadline_console=")]
    assert await count(served, OperatorSession) == 0


async def test_a_disabled_operator_cannot_sign_in(served: Served, browser: Callable[[], Browser]) -> None:
    await operators(served).add("ada", "admin", PASSWORD)
    await operators(served).set_disabled("ada")
    assert (await browser().sign_in("ada")).status_code == 401
    assert await count(served, OperatorSession) == 0


async def test_sign_in_without_the_login_csrf_token_is_403(
    served: Served, browser: Callable[[], Browser]
) -> None:
    await operators(served).add("ada", "admin", PASSWORD)
    client = browser()
    await client.get("/console/login")
    for data in (
        {"name": "ada", "password": PASSWORD},
        {"name": "ada", "password": PASSWORD, "csrf_token": "x"},
    ):
        response = await client.client.post("/console/login", data=data)
        assert response.status_code == 403 and "Missing or invalid CSRF token." in response.text
    fresh = browser()  # the field without the cookie
    page = await browser().get("/console/login")
    response = await fresh.client.post(
        "/console/login", data={"name": "ada", "password": PASSWORD, "csrf_token": csrf_of(page.text)}
    )
    assert response.status_code == 403
    assert await count(served, OperatorSession) == 0


async def test_sign_in_attempts_are_limited_per_name_and_per_client(
    served: Served, browser: Callable[[], Browser]
) -> None:
    """login_attempts=5 (the fixture): the sixth attempt on a name is 429, even with the right password;
    the same client trying other names is held back too. A success gives its attempts back."""
    await operators(served).add("ada", "admin", PASSWORD)
    await operators(served).add("cy", "agent", PASSWORD)
    for _ in range(3):
        assert (await browser().sign_in("cy")).status_code == 303  # successes do not count
    client = browser()
    for _ in range(5):
        assert (await client.sign_in("ada", "wrong password")).status_code == 401
    refused = await client.sign_in("ada")
    assert refused.status_code == 429 and "Too many sign-in attempts" in refused.text
    # the client address has used its 5 as well: another name from it is refused
    assert (await browser().sign_in("cy")).status_code == 429
    sessions = await count(served, OperatorSession)
    assert sessions == 3


async def test_signed_out_pages_redirect_and_htmx_gets_401_with_hx_redirect(
    served: Served, browser: Callable[[], Browser]
) -> None:
    client = browser()
    for path in ("/console/", "/console/overview", "/console/dead-letters", "/console/customers/cus_x"):
        response = await client.get(path)
        assert response.status_code == 303 and response.headers["location"] == "/console/login", path
    response = await client.get("/console/inbox/rows", headers={"HX-Request": "true"})
    assert response.status_code == 401 and response.headers["hx-redirect"] == "/console/login"
    response = await client.post("/console/customers/cus_x/take", {"csrf_token": "x"})
    assert response.status_code == 303 and response.headers["location"] == "/console/login"
    assert (await client.get("/console")).headers["location"] == "/console/"


async def test_the_admin_token_is_neither_a_session_nor_a_password(
    served: Served, browser: Callable[[], Browser]
) -> None:
    await operators(served).add("ada", "admin", PASSWORD)
    client = browser()
    response = await client.get("/console/", headers={"authorization": f"Bearer {ADMIN_TOKEN}"})
    assert response.status_code == 303
    client.client.cookies.set("threadline_console", ADMIN_TOKEN, path="/console")
    assert (await client.get("/console/")).status_code == 303
    for name in ("ada", "admin"):
        assert (await browser().sign_in(name, ADMIN_TOKEN)).status_code == 401
    assert await count(served, OperatorSession) == 0


async def test_an_expired_session_signs_nobody_in_and_is_deleted(served: Served, admin: Browser) -> None:
    assert (await admin.get("/console/")).status_code == 200
    async with services(served).db.session() as session:
        await session.execute(update(OperatorSession).values(expires_at=utcnow() - timedelta(seconds=1)))
    response = await admin.get("/console/")
    assert response.status_code == 303 and response.headers["location"] == "/console/login"
    assert await count(served, OperatorSession) == 0


async def test_signing_out_deletes_the_session(served: Served, admin: Browser) -> None:
    refused = await admin.post("/console/logout", {"csrf_token": "wrong"})
    assert refused.status_code == 403 and await count(served, OperatorSession) == 1
    response = await admin.post("/console/logout")
    assert response.status_code == 303 and response.headers["location"] == "/console/login"
    assert await count(served, OperatorSession) == 0
    assert (await admin.get("/console/")).status_code == 303


async def test_a_new_password_ends_the_sessions(served: Served, admin: Browser) -> None:
    await operators(served).set_password("ada", "another password")
    assert (await admin.get("/console/")).status_code == 303


async def test_the_cookie_is_secure_behind_https_or_when_set(tmp_path: Path) -> None:
    for public, secure, expected in (
        ("https://bot.example.com", None, True),
        ("http://bot.example.com", None, False),
        ("http://bot.example.com", True, True),
        ("https://bot.example.com", False, False),
    ):
        settings = app_settings(
            tmp_path / "data",
            admin_token=SecretStr(ADMIN_TOKEN),
            public_base_url=public,
            console=ConsoleSettings(secure_cookie=secure),
        )
        async with serving(settings) as served:
            page = await served.client.get("/console/login")
            [cookie] = [
                v for v in page.headers.get_list("set-cookie") if v.startswith("threadline_console_login=")
            ]
            assert ("Secure" in cookie) is expected, (public, secure)
