"""The gateway as an OpenID Connect relying party (统一身份认证): discovery, the authorization request,
the code exchange and the ID token's verification. Nothing here knows Litestar; the routes, cookies
and audit entries are gateway/controllers/oidc.py's.

Authlib does the protocol, on its own code: ``AsyncOAuth2Client`` (authlib.integrations.httpx_client,
which runs on httpx2 now that its httpx fallback is deprecated) builds the authorization URL with PKCE
(S256) and exchanges the code at the token endpoint, authenticating with ``client_secret_basic``
unless the provider offers only ``client_secret_post``. The ID token's signature is checked by joserfc
(authlib's JOSE library) against the provider's JWKS, with only the asymmetric algorithms the provider
advertises (never ``none``, never an HMAC keyed by the client secret); its claims by authlib's
``CodeIDToken``: ``iss`` is the configured issuer, ``aud`` holds our client_id (with ``azp`` when there
are several), ``exp``/``iat``/``nbf`` hold within ``LEEWAY`` of the node's clock, ``nonce`` is the one
this browser was given, ``at_hash`` matches the access token.

The discovery document and the JWKS are cached for an hour; a token signed with a key id the cached
JWKS lacks fetches it once more (the provider rotated its keys). Every HTTP call has a timeout.

What the browser carries between the two legs (state, nonce, PKCE verifier, where to go after) is a
short-lived cookie sealed with an HMAC whose key is derived from the node's own private key: the
callback trusts nothing in it unless the MAC holds, and refuses a ``state`` that is not the cookie's.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

import httpx2
from authlib.integrations.httpx_client import AsyncOAuth2Client, OAuthError
from authlib.oidc.core import CodeIDToken
from joserfc import jwt
from joserfc.errors import BadSignatureError, ClaimError, ExpiredTokenError, InvalidKeyIdError, JoseError
from joserfc.jwk import KeySet
from joserfc.jws import JWSRegistry

from nodes.accounts import OidcSettings

LEEWAY = 60  # seconds of clock skew allowed on exp, iat and nbf
CACHE_SECONDS = 3600  # discovery document and JWKS
FLOW_SECONDS = 600  # from /login/oidc to the callback
TIMEOUT = httpx2.Timeout(10.0, connect=5.0)
MAX_DOCUMENT = 1 << 20  # a discovery document or JWKS larger than this is not one
ALGORITHMS = ("RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "ES384", "ES512", "EdDSA", "Ed25519")
MAX_SUBJECT = 255  # users.oidc_subject


class OidcFailure(Exception):
    """A sign-in that cannot go on: ``reason`` for the audit log, the message for the person."""

    def __init__(self, reason: str, message: str, status: int = 401, detail: str = "") -> None:
        super().__init__(message)
        self.reason = reason
        self.status = status
        self.detail = detail


def unreachable(what: str) -> OidcFailure:
    return OidcFailure("provider_unreachable", "统一身份认证平台暂时无法访问，请稍后再试或使用密码登录 "
                       "(the identity provider cannot be reached; try again later or sign in with a password)",
                       502, what)


def misconfigured(what: str) -> OidcFailure:
    return OidcFailure("provider_config", "统一身份认证平台的配置与本节点不符，请联系管理员核对 node.yaml 的 oidc 设置 "
                       "(the provider's metadata does not fit node.yaml oidc:; ask the administrator)", 502, what)


def bad_token(what: str) -> OidcFailure:
    return OidcFailure(f"id_token.{what}", f"统一身份认证平台返回的身份令牌未通过校验（{what}），请重新登录 "
                       f"(the ID token did not verify: {what}; sign in again)", 401)


@dataclass(frozen=True)
class Flow:
    """One sign-in between its two legs."""

    state: str
    nonce: str
    verifier: str  # PKCE code_verifier (RFC 7636), 64 characters
    next: str
    expires: int


@dataclass(frozen=True)
class Identity:
    subject: str
    claims: dict[str, Any]


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


class RelyingParty:
    def __init__(self, settings: OidcSettings, clock: Callable[[], int], flow_key: bytes) -> None:
        self.settings = settings
        self.clock = clock
        self._flow_key = flow_key
        self._metadata: dict[str, Any] | None = None
        self._metadata_at = 0.0
        self._jwks: KeySet | None = None
        self._jwks_at = 0.0

    # --- the cookie between the two legs
    def seal(self, flow: Flow) -> str:
        body = _b64(json.dumps([flow.state, flow.nonce, flow.verifier, flow.next, flow.expires]).encode())
        return f"{body}.{_b64(hmac.new(self._flow_key, body.encode(), hashlib.sha256).digest())}"

    def unseal(self, value: str) -> Flow | None:
        """The flow a cookie holds, or None: absent, forged, altered or expired."""
        body, _, mac = value.partition(".")
        if not body or len(value) > 2000:
            return None
        expected = _b64(hmac.new(self._flow_key, body.encode(), hashlib.sha256).digest())
        if not hmac.compare_digest(mac.encode("utf-8", "surrogateescape"), expected.encode()):
            return None
        try:
            state, nonce, verifier, target, expires = json.loads(_unb64(body))
            flow = Flow(str(state), str(nonce), str(verifier), str(target), int(expires))
        except (ValueError, TypeError):
            return None
        return flow if flow.expires > self.clock() else None

    # --- the provider's metadata
    async def _document(self, url: str) -> Any:
        try:
            async with httpx2.AsyncClient(timeout=TIMEOUT, follow_redirects=False) as client:
                resp = await client.get(url, headers={"Accept": "application/json"})
        except httpx2.HTTPError as e:
            raise unreachable(f"{url}: {type(e).__name__}") from None
        if resp.status_code != 200 or len(resp.content) > MAX_DOCUMENT:
            raise misconfigured(f"{url}: HTTP {resp.status_code}")
        try:
            return resp.json()
        except ValueError:
            raise misconfigured(f"{url}: not JSON") from None

    def _endpoint(self, meta: dict[str, Any], name: str) -> str:
        url = meta.get(name)
        issuer = urlsplit(self.settings.issuer)
        parts = urlsplit(url) if isinstance(url, str) else None
        if parts is None or not parts.hostname or not (
                parts.scheme == "https" or (parts.scheme == issuer.scheme == "http" and parts.hostname == issuer.hostname)):
            raise misconfigured(f"{name}: {url!r}")
        return str(url)

    async def metadata(self) -> dict[str, Any]:
        """The discovery document (OpenID Connect Discovery 1.0 §4), checked and cached."""
        if self._metadata is not None and time.monotonic() - self._metadata_at < CACHE_SECONDS:
            return self._metadata
        meta = await self._document(f"{self.settings.issuer.rstrip('/')}/.well-known/openid-configuration")
        if not isinstance(meta, dict):
            raise misconfigured("discovery: not an object")
        if meta.get("issuer") != self.settings.issuer:  # §4.3: it must be exactly the issuer asked for
            raise misconfigured(f"issuer {meta.get('issuer')!r} != {self.settings.issuer!r}")
        for name in ("authorization_endpoint", "token_endpoint", "jwks_uri"):
            self._endpoint(meta, name)
        self._metadata, self._metadata_at = meta, time.monotonic()
        self._jwks = None  # the keys follow the document they came with
        return meta

    async def keys(self, *, force: bool = False) -> KeySet:
        if not force and self._jwks is not None and time.monotonic() - self._jwks_at < CACHE_SECONDS:
            return self._jwks
        meta = await self.metadata()
        data = await self._document(self._endpoint(meta, "jwks_uri"))
        try:
            keys = KeySet.import_key_set(data)
        except (JoseError, ValueError, KeyError, TypeError) as e:
            raise misconfigured(f"jwks: {type(e).__name__}") from None
        self._jwks, self._jwks_at = keys, time.monotonic()
        return keys

    def _algorithms(self, meta: dict[str, Any]) -> list[str]:
        offered = meta.get("id_token_signing_alg_values_supported") or ["RS256"]  # RS256: §3 of Discovery
        algs = [a for a in ALGORITHMS if isinstance(offered, list) and a in offered]
        if not algs:
            raise misconfigured(f"id_token_signing_alg_values_supported: {offered!r}")
        return algs

    def _client(self, meta: dict[str, Any]) -> AsyncOAuth2Client:
        methods = meta.get("token_endpoint_auth_methods_supported") or ["client_secret_basic"]
        method = "client_secret_basic" if "client_secret_basic" in methods else "client_secret_post"
        if method not in methods:
            raise misconfigured(f"token_endpoint_auth_methods_supported: {methods!r}")
        s = self.settings
        return AsyncOAuth2Client(client_id=s.client_id, client_secret=s.client_secret, token_endpoint_auth_method=method,
                                 scope=s.scopes, redirect_uri=s.redirect_uri, code_challenge_method="S256",
                                 timeout=TIMEOUT, follow_redirects=False)

    # --- the two legs
    async def begin(self, target: str) -> tuple[str, Flow]:
        """The provider's authorization URL for a new sign-in, and the flow to seal into the browser."""
        meta = await self.metadata()
        flow = Flow(state=secrets.token_urlsafe(24), nonce=secrets.token_urlsafe(24),
                    verifier=secrets.token_urlsafe(48), next=target, expires=self.clock() + FLOW_SECONDS)
        async with self._client(meta) as client:
            url, _state = client.create_authorization_url(self._endpoint(meta, "authorization_endpoint"),
                                                          state=flow.state, code_verifier=flow.verifier,
                                                          nonce=flow.nonce)
        return str(url), flow

    async def finish(self, code: str, flow: Flow) -> Identity:
        """Exchange the code (with the flow's PKCE verifier) and verify the ID token that comes back."""
        meta = await self.metadata()
        async with self._client(meta) as client:
            try:
                token = await client.fetch_token(self._endpoint(meta, "token_endpoint"), grant_type="authorization_code",
                                                 code=code, code_verifier=flow.verifier)
            except OAuthError as e:
                raise OidcFailure("token_endpoint", f"统一身份认证平台拒绝了登录凭据（{e.error}），请重新登录 "
                                  f"(the provider's token endpoint refused the code: {e.error})", 401,
                                  str(e.description or "")) from None
            except httpx2.HTTPStatusError as e:
                raise OidcFailure("token_endpoint", "统一身份认证平台的令牌接口出错，请稍后重新登录 "
                                  "(the provider's token endpoint failed)", 502,
                                  f"HTTP {e.response.status_code}") from None
            except httpx2.HTTPError as e:
                raise unreachable(f"token endpoint: {type(e).__name__}") from None
        id_token = token.get("id_token")
        if not isinstance(id_token, str) or not id_token:
            raise bad_token("missing")
        access = token.get("access_token")
        return await self.verify(id_token, flow.nonce, access if isinstance(access, str) else None)

    async def verify(self, id_token: str, nonce: str, access_token: str | None = None) -> Identity:
        meta = await self.metadata()
        registry = JWSRegistry(algorithms=self._algorithms(meta), strict_check_header=False)
        try:
            try:
                decoded = jwt.decode(id_token, await self.keys(), registry=registry)
            except InvalidKeyIdError:
                decoded = jwt.decode(id_token, await self.keys(force=True), registry=registry)
        except BadSignatureError:
            raise bad_token("signature") from None
        except InvalidKeyIdError:
            raise bad_token("kid") from None
        except JoseError as e:
            raise bad_token(e.error or "malformed") from None
        s = self.settings
        claims = CodeIDToken(decoded.claims, decoded.header, {
            "iss": {"essential": True, "value": s.issuer},
            "aud": {"essential": True, "value": s.client_id},
            "sub": {"essential": True},
            "nonce": {"essential": True, "value": nonce},
        }, {"nonce": nonce, "client_id": s.client_id, "access_token": access_token})
        try:
            claims.validate(now=self.clock(), leeway=LEEWAY)
        except ExpiredTokenError:
            raise bad_token("exp") from None
        except ClaimError as e:
            raise bad_token(e.claim.split(",")[0] or "claims") from None
        subject = claims["sub"]
        if not isinstance(subject, str) or not subject or len(subject) > MAX_SUBJECT:
            raise bad_token("sub")
        return Identity(subject, dict(claims))


def flow_key(private_raw: bytes) -> bytes:
    """The node's key for sealing the flow cookie: derived from its private key, so it survives a restart
    and is this node's alone; one-way, so the cookie's MAC reveals nothing of the signing key."""
    return hmac.new(private_raw, b"fedappraisal/oidc-flow/v1", hashlib.sha256).digest()
