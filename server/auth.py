"""Bearer-token authentication as a grpc.aio server interceptor.

Tokens come from a file (one per line) and/or REFTGUARD_AUTH_TOKEN; every presented token is compared
against every configured one with hmac.compare_digest (no early exit), and tokens are never logged.
Health checks and reflection can be exempted so that load balancers and grpcurl work without one.
"""
from __future__ import annotations

import hashlib
import hmac
import logging
from pathlib import Path

import grpc

log = logging.getLogger("reftguard.auth")
HEALTH_PREFIX = "/grpc.health.v1.Health/"
REFLECTION_PREFIX = "/grpc.reflection."


def load_tokens(token: str, token_file: str) -> list[str]:
    tokens = [t for t in [token.strip()] if t]
    if token_file:
        tokens += [line.strip() for line in Path(token_file).read_text().splitlines() if line.strip() and not line.startswith("#")]
    return tokens


def client_identity(metadata, peer: str) -> str:
    """Who a caller is, for per-client limits: a hash of its token if it has one, else its IP (no port)."""
    for key, value in metadata or ():
        if key == "authorization":
            return "token:" + hashlib.sha256(value.encode()).hexdigest()[:12]
    host = peer.rsplit(":", 1)[0] if peer.count(":") >= 2 else peer
    return "peer:" + host


class TokenAuthInterceptor(grpc.aio.ServerInterceptor):
    def __init__(self, tokens: list[str], *, exempt_health: bool, exempt_reflection: bool, on_reject=None):
        if not tokens:
            raise ValueError("token auth enabled with no tokens")
        self._expected = [f"Bearer {t}".encode() for t in tokens]
        self._exempt = tuple(p for p, on in ((HEALTH_PREFIX, exempt_health), (REFLECTION_PREFIX, exempt_reflection)) if on)
        self._on_reject = on_reject

    def _authorized(self, metadata) -> bool:
        presented = b""
        for key, value in metadata or ():
            if key == "authorization":
                presented = value.encode() if isinstance(value, str) else value
        ok = False
        for expected in self._expected:  # compare with all, always
            ok |= hmac.compare_digest(presented, expected)
        return ok

    async def intercept_service(self, continuation, details):
        if details.method.startswith(self._exempt) or self._authorized(details.invocation_metadata):
            return await continuation(details)
        handler = await continuation(details)
        if self._on_reject:
            self._on_reject()
        log.warning("rejected %s: missing or invalid bearer token", details.method)
        return _deny_like(handler)


_DENY_MESSAGE = "missing or invalid bearer token (send 'authorization: Bearer <token>')"


def _deny_like(handler):
    async def deny_unary(request, context):
        await context.abort(grpc.StatusCode.UNAUTHENTICATED, _DENY_MESSAGE)

    async def deny_stream(request, context):
        await context.abort(grpc.StatusCode.UNAUTHENTICATED, _DENY_MESSAGE)
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
