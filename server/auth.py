"""Who a caller is: bearer tokens, the reviewer credential and the identity per-client limits key on.

Tokens come from a file (one per line) and/or REFTGUARD_AUTH_TOKEN; every presented token is compared
against every configured one with hmac.compare_digest (no early exit), and tokens are never logged.
Health checks and reflection can be exempted so that load balancers and grpcurl work without one.

A caller's identity (for the per-client stream limit and the Feedback rate limit) is derived from what
the server verified, never from a value the client chose: a hash of the configured token it presented,
else the host part of its peer address. A request with more than one `authorization` header is refused
outright, auth on or off, so no two parts of the server can read different credentials from one call.
"""
from __future__ import annotations

import hashlib
import hmac
import ipaddress
import logging
import time
from dataclasses import dataclass
from pathlib import Path

import grpc

from reftguard.server.validation import clip

log = logging.getLogger("reftguard.auth")
HEALTH_PREFIX = "/grpc.health.v1.Health/"
REFLECTION_PREFIX = "/grpc.reflection."
AUTHORIZATION = "authorization"


def load_tokens(token: str, token_file: str) -> list[str]:
    tokens = [t for t in [token.strip()] if t]
    if token_file:
        tokens += [line.strip() for line in Path(token_file).read_text().splitlines() if line.strip() and not line.startswith("#")]
    return tokens


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:  # a host name: it may resolve to any interface
        return False


def check_exposure(cfg, *, tokens: bool) -> None:
    """Refuse to serve gRPC beyond loopback with neither bearer tokens nor client certificates, unless
    --insecure-no-auth says so explicitly (then warn: anyone who can reach the port may score and send
    Feedback). `cfg` is a ServerConfig; `tokens`: client tokens are configured."""
    if is_loopback(cfg.host) or tokens or cfg.tls_client_ca:
        return
    where = f"{cfg.host}:{cfg.port}"
    if not cfg.insecure_no_auth:
        raise ValueError(
            f"refusing to serve gRPC on {cfg.host} without authentication: set a bearer token "
            "(--auth-token / REFTGUARD_AUTH_TOKEN, or --auth-token-file) or mutual TLS (--tls-client-ca), bind "
            "loopback (--host 127.0.0.1), or pass --insecure-no-auth (REFTGUARD_INSECURE_NO_AUTH=true) to accept "
            "that anyone who can reach the port may call it")
    log.warning("gRPC on %s is unauthenticated (--insecure-no-auth): anyone who can reach it may score and send Feedback", where)


class AuthError(Exception):
    def __init__(self, code: grpc.StatusCode, message: str):
        super().__init__(message)
        self.code, self.message = code, message


DENY = AuthError(grpc.StatusCode.UNAUTHENTICATED, "missing or invalid bearer token (send 'authorization: Bearer <token>')")
DUPLICATE = AuthError(grpc.StatusCode.UNAUTHENTICATED, "more than one 'authorization' header; send exactly one 'authorization: Bearer <token>'")


@dataclass(frozen=True)
class Caller:
    identity: str  # "token:<hash of the verified token>" or "peer:<host>"
    reviewer: bool  # presented the reviewer (Feedback) credential


def peer_host(peer: str) -> str:
    """'ipv4:10.0.0.7:5123' -> 'ipv4:10.0.0.7', 'ipv6:[::1]:5123' -> 'ipv6:[::1]' (ports change per connection)."""
    return peer.rsplit(":", 1)[0] if peer.count(":") >= 2 else peer


class Authenticator:
    """Verifies the one `authorization` header of a call against client and reviewer tokens."""

    def __init__(self, tokens: list[str], reviewer_tokens: list[str] = ()):
        self.required = bool(tokens)  # clients must present a token
        self.reviewer_required = bool(reviewer_tokens)  # Feedback needs the reviewer credential
        self._expected = [(f"Bearer {t}".encode(), t, False) for t in tokens] + [(f"Bearer {t}".encode(), t, True) for t in reviewer_tokens]

    def identify(self, metadata, peer: str, subject: str = "") -> Caller:
        """The verified caller, or AuthError (two headers; no valid token while tokens are required). With
        no token, a client certificate's subject (mutual TLS) names the caller, else its peer host."""
        values = [v for k, v in metadata or () if k == AUTHORIZATION]
        if len(values) > 1:
            raise DUPLICATE
        presented = values[0] if values else b""
        presented = presented.encode() if isinstance(presented, str) else presented
        match = None
        for expected, token, reviewer in self._expected:  # compare with all, always
            if hmac.compare_digest(presented, expected):
                match = (token, reviewer)
        if match is not None:
            return Caller("token:" + hashlib.sha256(match[0].encode()).hexdigest()[:12], match[1])
        if self.required:
            raise DENY
        return Caller("cert:" + subject if subject else "peer:" + peer_host(peer), False)


def cert_subject(context) -> str:
    """The verified client certificate's subject (common name, else first SAN) of a mutual-TLS call, or ""."""
    auth = context.auth_context() or {}
    for key in ("x509_common_name", "x509_subject_alternative_name"):
        names = auth.get(key) or []
        if names:
            return (names[0].decode() if isinstance(names[0], bytes) else str(names[0]))[:256]
    return ""


class RateLimit:
    """At most `per_minute` calls per identity: a bucket of `per_minute` calls refilled evenly over a
    minute (0 = no limit). Only the event loop calls it, so it needs no lock."""

    MAX_TRACKED = 10_000  # identities remembered before full (idle) buckets are forgotten

    def __init__(self, per_minute: int, clock=time.monotonic):
        self.capacity = float(per_minute)
        self.refill_per_s = per_minute / 60.0
        self.clock = clock
        self._buckets: dict[str, tuple[float, float]] = {}  # identity -> (calls left, when)

    def wait_s(self, identity: str) -> float:
        """0 and one call used if `identity` may call now, else the seconds until it may."""
        if self.capacity <= 0:
            return 0.0
        now = self.clock()
        left, when = self._buckets.get(identity, (self.capacity, now))
        left = min(self.capacity, left + (now - when) * self.refill_per_s)
        if left < 1.0:
            self._buckets[identity] = (left, now)
            return (1.0 - left) / self.refill_per_s
        if identity not in self._buckets and len(self._buckets) >= self.MAX_TRACKED:
            self._forget_idle(now)
        self._buckets[identity] = (left - 1.0, now)
        return 0.0

    def _forget_idle(self, now: float) -> None:
        for key, (left, when) in list(self._buckets.items()):
            if left + (now - when) * self.refill_per_s >= self.capacity:
                del self._buckets[key]


class AuthInterceptor(grpc.aio.ServerInterceptor):
    """Refuses unauthenticated calls (and any call with two `authorization` headers) before the handler."""

    def __init__(self, auth: Authenticator, *, exempt_health: bool, exempt_reflection: bool, on_reject=None):
        self.auth = auth
        self._exempt = tuple(p for p, on in ((HEALTH_PREFIX, exempt_health), (REFLECTION_PREFIX, exempt_reflection)) if on)
        self._on_reject = on_reject

    async def intercept_service(self, continuation, details):
        handler = await continuation(details)
        if details.method.startswith(self._exempt):
            return handler
        try:
            # The peer is not known here; an identity is only needed by the handler (which asks again).
            self.auth.identify(details.invocation_metadata, "")
            return handler
        except AuthError as err:
            if self._on_reject:
                self._on_reject(err.code)
            log.warning("rejected %r: %s", clip(details.method), err.message)
            return deny_like(handler, err)


def deny_like(handler, err: AuthError):
    """A handler of the same shape as `handler` that only aborts with `err`."""
    async def deny_unary(request, context):
        await context.abort(err.code, err.message)

    async def deny_stream(request, context):
        await context.abort(err.code, err.message)
        yield  # pragma: no cover - makes this an async generator

    if handler is None:
        return None
    kw = dict(request_deserializer=handler.request_deserializer, response_serializer=handler.response_serializer)
    if handler.request_streaming and handler.response_streaming:
        return grpc.stream_stream_rpc_method_handler(deny_stream, **kw)
    if handler.request_streaming:
        return grpc.stream_unary_rpc_method_handler(deny_unary, **kw)
    if handler.response_streaming:
        return grpc.unary_stream_rpc_method_handler(deny_stream, **kw)
    return grpc.unary_unary_rpc_method_handler(deny_unary, **kw)
