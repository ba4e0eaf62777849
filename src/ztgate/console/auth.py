"""Console logins, sessions and the checks every console request passes.

- Login: a principal's name and console password (argon2id); an unknown
  name costs the same argon2 verification; one message for every failure;
  failures throttled per name and per address; disabled principals and
  principals without the approver or admin role refused. The login page's
  script sends the public key of the browser key pair the session is bound
  to (see `signatures.py`). A double-submit cookie guards the login form
  itself against cross-site login.
- Every request: the session cookie names a live session; the principal is
  read again (enabled? approver or admin?) — a role taken away or a
  principal disabled takes effect at the next request.
- Every state-changing POST: the Origin header, when present, is this
  origin, and the form's CSRF token is the session's (constant-time).
"""

from __future__ import annotations

import asyncio
import hmac
import logging
import secrets
from dataclasses import dataclass

from starlette.requests import Request
from starlette.responses import RedirectResponse, Response

from ztgate.audit import AuditEntry
from ztgate.console.sessions import COOKIE, Session, SessionStore, csrf_matches, csrf_token
from ztgate.console.signatures import session_key
from ztgate.console.throttle import LoginThrottle
from ztgate.console.web import (
    PREFIX,
    ConsoleError,
    LoginRequired,
    client_address,
    field,
    read_form,
    render,
    same_origin,
)
from ztgate.errors import InvalidInputError, StoreUnavailableError
from ztgate.gateway import Gateway
from ztgate.principals.registry import ADMIN, APPROVER, Principal, PrincipalRegistry
from ztgate.store.hot import MemoryHotState

logger = logging.getLogger(__name__)
LOGIN_COOKIE = "ztgate_console_login"
INVALID = "invalid name or password"


# Password checks (argon2id: memory and CPU) run at most this many at a time.
MAX_PASSWORD_CHECKS = 4


@dataclass(frozen=True, slots=True)
class Viewer:
    """Who is looking: the principal (as of this request) and the session."""

    principal: Principal
    session: Session
    token: str

    @property
    def name(self) -> str:
        """The principal's name."""
        return self.principal.name

    @property
    def csrf(self) -> str:
        """The session's CSRF token, for forms."""
        return csrf_token(self.token)

    @property
    def is_admin(self) -> bool:
        """True for an admin (every page, every action)."""
        return self.principal.has(ADMIN)


class ConsoleAuth:
    """Sessions, logins and the per-request checks, bound to one gateway."""

    def __init__(self, gateway: Gateway) -> None:
        settings = gateway.settings.console
        self.gateway = gateway
        self.sessions = SessionStore(
            gateway.database,
            gateway.clock,
            lifetime=float(settings.session_ttl_seconds),
            idle=float(settings.idle_timeout_seconds),
        )
        self.principals = PrincipalRegistry(gateway.database, gateway.clock, audit=gateway.audit)
        self.throttle = LoginThrottle(
            gateway.hot or MemoryHotState(gateway.clock),
            per_name=settings.login_attempts_per_name,
            per_address=settings.login_attempts_per_address,
            window=settings.login_window_seconds,
        )
        self._checking = asyncio.Semaphore(MAX_PASSWORD_CHECKS)

    # -- every request ---------------------------------------------------------

    async def viewer(self, request: Request) -> Viewer:
        """The logged-in principal, checked again now.

        Raises:
            LoginRequired: no live session, or its principal is gone or disabled.
            ConsoleError: 403, the principal lacks the approver or admin role.
        """
        token = request.cookies.get(COOKIE)
        session = await asyncio.to_thread(self.sessions.find, token)
        if session is None or token is None:
            raise LoginRequired
        principal = await asyncio.to_thread(self.principals.find, session.principal)
        if principal is None or principal.disabled_at is not None:
            await asyncio.to_thread(self.sessions.end, token)
            raise LoginRequired
        if not principal.has(APPROVER):
            raise ConsoleError(403, f"principal {principal.name!r} may not use the console")
        return Viewer(principal, session, token)

    async def form(self, request: Request, viewer: Viewer) -> dict[str, str]:
        """The POSTed form, once its origin and CSRF token are checked.

        Raises:
            ConsoleError: 403 for another origin or a missing or wrong CSRF token.
        """
        if not same_origin(request):
            raise ConsoleError(403, "the form was sent from another site")
        form = await read_form(request)
        if not csrf_matches(viewer.token, form.get("csrf")):
            raise ConsoleError(403, "the form's CSRF token is missing or wrong: reload the page")
        return form

    # -- login and logout -------------------------------------------------------

    async def login_page(self, request: Request) -> Response:
        """GET /console/login: the form (or the console, when logged in already)."""
        try:
            await self.viewer(request)
        except (LoginRequired, ConsoleError):
            return self._login_form()
        return RedirectResponse(f"{PREFIX}/", 303)

    async def login(self, request: Request) -> Response:
        """POST /console/login: check the password, make the session, set its cookie."""
        if not same_origin(request):
            raise ConsoleError(403, "the form was sent from another site")
        form = await read_form(request)
        expected = request.cookies.get(LOGIN_COOKIE, "")
        presented = form.get("login_csrf", "")
        if not expected or not hmac.compare_digest(expected.encode(), presented.encode()):
            raise ConsoleError(403, "the login form expired: reload the page and log in again")
        name = field(form, "name", 64).strip()
        password = field(form, "password", 1024)
        address = client_address(request)
        # Counted before the check, so that guesses sent in parallel cannot
        # all pass the throttle first; a good login takes it back.
        try:
            allowed = await self.throttle.attempt(name, address)
        except StoreUnavailableError:
            return self._throttle_unavailable(name)
        if not allowed:
            logger.warning("console: login for %r from %s throttled", name[:64], address)
            minutes = max(1, round(self.throttle.window / 60))
            return self._login_form(
                f"too many failed logins: try again within {minutes} minutes", 429, name
            )
        async with self._checking:  # argon2id is costly: a few checks at a time
            principal = await asyncio.to_thread(self.principals.check_password, name, password)
        if principal is None or not principal.has(APPROVER):
            # A principal without the role is told nothing more than a wrong
            # password would tell (no confirmation that the password is right).
            logger.warning("console: failed login for %r from %s", name[:64], address)
            return self._login_form(INVALID, 401, name)
        try:
            await self.throttle.succeeded(name, address)
        except StoreUnavailableError:
            return self._throttle_unavailable(name)
        try:
            jwk, thumbprint = session_key(field(form, "public_jwk", 1024))
        except InvalidInputError as exc:
            return self._login_form(
                f"{exc.message} (the console needs JavaScript and WebCrypto)", 400, name
            )
        session, token = await asyncio.to_thread(
            self.sessions.create, principal.name, jwk, thumbprint
        )
        await self._audit("console.login", principal.name, session, thumbprint, address)
        response = RedirectResponse(f"{PREFIX}/", 303)
        response.set_cookie(
            COOKIE,
            token,
            max_age=int(self.sessions.lifetime),
            path=PREFIX,
            secure=True,
            httponly=True,
            samesite="strict",
        )
        response.delete_cookie(LOGIN_COOKIE, path=f"{PREFIX}/login", secure=True, httponly=True)
        return response

    async def logout(self, request: Request) -> Response:
        """POST /console/logout: end the session (CSRF-checked)."""
        viewer = await self.viewer(request)
        await self.form(request, viewer)
        await asyncio.to_thread(self.sessions.end, viewer.token)
        await self._audit(
            "console.logout",
            viewer.name,
            viewer.session,
            viewer.session.key_thumbprint,
            client_address(request),
        )
        response = RedirectResponse(f"{PREFIX}/login", 303)
        response.delete_cookie(COOKIE, path=PREFIX, secure=True, httponly=True, samesite="strict")
        return response

    def _throttle_unavailable(self, name: str) -> Response:
        """The login refused: the throttle's hot state does not answer (fail closed)."""
        logger.error("console: login for %r refused: the hot state is unavailable", name[:64])
        return self._login_form("logins are unavailable for now: try again shortly", 503, name)

    def _login_form(self, error: str = "", status: int = 200, name: str = "") -> Response:
        nonce = secrets.token_urlsafe(32)
        response = render("login.html", status, error=error, name=name, login_csrf=nonce)
        response.set_cookie(
            LOGIN_COOKIE,
            nonce,
            max_age=3600,
            path=f"{PREFIX}/login",
            secure=True,
            httponly=True,
            samesite="strict",
        )
        return response

    async def _audit(
        self, action: str, principal: str, session: Session, thumbprint: str, address: str
    ) -> None:
        await self.gateway.audit.append(
            AuditEntry(
                kind="admin",
                outcome="allow",
                detail={
                    "action": action,
                    "principal": principal,
                    "session": session.id,
                    "session_key_thumbprint": thumbprint,
                    "address": address,
                },
            )
        )
