"""AsyncGuardClient (grpc.aio) and GuardClient (the same, driven from a private event-loop thread).

`score_stream` is the exactly-once path for datasets: requests go out on one ScoreStream with at most
`max_in_flight` unanswered; responses come back in order and each is matched to its request. If the
stream breaks with UNAVAILABLE or RESOURCE_EXHAUSTED (a restart, a drain, overload), a new stream is
opened and only the unanswered requests are re-sent, so no item is lost and none is yielded twice.
"""
from __future__ import annotations

import asyncio
import threading
from collections import deque
from dataclasses import dataclass
from typing import Any, AsyncIterator, Iterable, Iterator

import grpc

from reftguard.clients.requests import Backoff, chunked, make_request
from reftguard.v1 import guard_pb2 as pb
from reftguard.v1 import guard_pb2_grpc


@dataclass
class ClientConfig:
    target: str = "localhost:50051"
    timeout: float | None = 60.0  # per unary RPC, seconds
    token: str | None = None  # bearer token sent as `authorization: Bearer ...`
    tls_ca: str | None = None  # PEM file of the CA that signed the server cert; enables TLS
    tls_cert: str | None = None  # client cert (mTLS)
    tls_key: str | None = None  # client key (mTLS)
    max_retries: int = 8
    max_message_mb: int = 16


def _channel(cfg: ClientConfig) -> grpc.aio.Channel:
    options = [
        ("grpc.max_receive_message_length", cfg.max_message_mb << 20),
        ("grpc.max_send_message_length", cfg.max_message_mb << 20),
        ("grpc.lb_policy_name", "round_robin"),
    ]
    if cfg.tls_ca or cfg.tls_cert:
        def read(p):
            return open(p, "rb").read() if p else None

        creds = grpc.ssl_channel_credentials(read(cfg.tls_ca), read(cfg.tls_key), read(cfg.tls_cert))
        return grpc.aio.secure_channel(cfg.target, creds, options=options)
    return grpc.aio.insecure_channel(cfg.target, options=options)


class StreamBroken(Exception):
    """A stream response did not match its request (a protocol violation, never retried)."""


class AsyncGuardClient:
    def __init__(self, target: str | ClientConfig = "localhost:50051", **kwargs: Any):
        self.cfg = target if isinstance(target, ClientConfig) else ClientConfig(target=target, **kwargs)
        self.channel = _channel(self.cfg)
        self.stub = guard_pb2_grpc.GuardStub(self.channel)
        self.backoff = Backoff(max_retries=self.cfg.max_retries)
        self.retries = 0  # retried RPCs and stream reconnects, for callers that report them

    @property
    def _metadata(self):
        return (("authorization", f"Bearer {self.cfg.token}"),) if self.cfg.token else None

    async def close(self) -> None:
        await self.channel.close()

    async def __aenter__(self):
        return self

    async def __aexit__(self, *exc):
        await self.close()

    async def _pause_or_raise(self, err: grpc.aio.AioRpcError, attempt: int) -> None:
        """Back off before retry number `attempt`, or re-raise `err` when it is not retryable."""
        if not self.backoff.should_retry(err, attempt):
            raise err
        await asyncio.sleep(self.backoff.delay(attempt, err))
        self.retries += 1

    async def _unary(self, method, request):
        attempt = 0
        while True:
            try:
                return await method(request, timeout=self.cfg.timeout, metadata=self._metadata)
            except grpc.aio.AioRpcError as err:
                await self._pause_or_raise(err, attempt)
                attempt += 1

    async def score(self, items: Iterable[Any], *, threshold: float | None = None, source: str = "", truncation: str | None = None,
                    flag_refusal_examples: bool = False, accept_review: bool = False) -> list[pb.Decision]:
        """Score one batch (≤ the server's max_client_batch items); retries overload and unavailability.
        accept_review: decisions in a bundle's review band come back as REVIEW, not FLAG."""
        req = make_request(items, threshold=threshold, source=source, truncation=truncation, flag_refusal_examples=flag_refusal_examples,
                           accept_review=accept_review)
        resp = await self._unary(self.stub.Score, req)
        return list(resp.decisions)

    async def feedback(self, id: str, *, served: str, reviewed: str, score: float = 0.0, source: str = "", reviewer: str = "") -> None:
        verdicts = {"allow": pb.ALLOW, "flag": pb.FLAG}
        labels = {"benign": pb.BENIGN, "harmful": pb.HARMFUL}
        if served not in verdicts or reviewed not in labels:
            raise ValueError("served must be 'allow'|'flag' and reviewed 'benign'|'harmful'")
        req = pb.FeedbackRequest(id=id, score=score, served=verdicts[served], reviewed=labels[reviewed], source=source, reviewer=reviewer)
        await self._unary(self.stub.Feedback, req)

    async def info(self) -> pb.InfoResponse:
        return await self._unary(self.stub.Info, pb.InfoRequest())

    async def health(self, service: str = "") -> bool:
        from grpc_health.v1 import health_pb2, health_pb2_grpc

        stub = health_pb2_grpc.HealthStub(self.channel)
        resp = await stub.Check(health_pb2.HealthCheckRequest(service=service), timeout=self.cfg.timeout)
        return resp.status == health_pb2.HealthCheckResponse.SERVING

    async def score_stream(
        self,
        items: Iterable[Any] | AsyncIterator[Any],
        *,
        batch_size: int = 32,
        max_in_flight: int = 8,
        threshold: float | None = None,
        source: str = "",
        truncation: str | None = None,
        flag_refusal_examples: bool = False,
        accept_review: bool = False,
    ) -> AsyncIterator[pb.Decision]:
        """Yield one decision per input item, in input order, exactly once (see module doc)."""
        if batch_size < 1 or max_in_flight < 1:
            raise ValueError("batch_size and max_in_flight must be >= 1")
        requests = _requests(items, batch_size, threshold=threshold, source=source, truncation=truncation,
                             flag_refusal_examples=flag_refusal_examples, accept_review=accept_review)
        unacked: deque[pb.ScoreRequest] = deque()
        room = asyncio.Condition()
        exhausted = False
        attempt = 0

        async def write(call, dead: asyncio.Event) -> None:
            # Never cancelled: it stops on `dead`, so a request pulled from `items` is always either
            # in `unacked` (and re-sent on the next stream) or not pulled yet. Nothing is lost.
            nonlocal exhausted
            try:
                for req in list(unacked):  # re-send what the last stream left unanswered
                    await call.write(req)
                while not exhausted:
                    async with room:
                        await room.wait_for(lambda: len(unacked) < max_in_flight or dead.is_set())
                    if dead.is_set():
                        return
                    req = await requests.__anext__()
                    if req is None:
                        exhausted = True
                        break
                    unacked.append(req)
                    await call.write(req)
                await call.done_writing()
            except (grpc.RpcError, asyncio.InvalidStateError, grpc.aio.UsageError):
                write_failed.set()
                return  # the call died; the reading side decides whether to retry

        while unacked or not exhausted:
            call = self.stub.ScoreStream(metadata=self._metadata)
            dead, write_failed = asyncio.Event(), asyncio.Event()
            writer = asyncio.ensure_future(write(call, dead))
            try:
                async for resp in call:
                    req = unacked.popleft()
                    if len(resp.decisions) != len(req.items):
                        raise StreamBroken(f"response has {len(resp.decisions)} decisions for {len(req.items)} items")
                    async with room:
                        room.notify_all()
                    attempt = 0
                    for d in resp.decisions:
                        yield d
            except grpc.aio.AioRpcError as err:
                if err.code() == grpc.StatusCode.INTERNAL and write_failed.is_set() and unacked:
                    # grpc.aio reports a write that raced the server closing the stream as a local
                    # INTERNAL error, hiding the server's real status. Ask again with a unary call,
                    # which has no such race: it either answers (and we go on) or raises the real status.
                    req = unacked.popleft()
                    for d in (await self._unary(self.stub.Score, req)).decisions:
                        yield d
                    continue
                await self._pause_or_raise(err, attempt)
                attempt += 1
            finally:
                dead.set()
                async with room:
                    room.notify_all()
                if not call.done():
                    call.cancel()
                await writer


async def _requests(items, batch_size: int, **kw) -> AsyncIterator[pb.ScoreRequest | None]:
    """Requests built lazily from a sync or async iterable; ends with None forever."""
    start = 0
    if hasattr(items, "__aiter__"):
        chunk: list[Any] = []
        async for x in items:
            chunk.append(x)
            if len(chunk) == batch_size:
                yield make_request(chunk, start=start, **kw)
                start += len(chunk)
                chunk = []
        if chunk:
            yield make_request(chunk, start=start, **kw)
    else:
        for chunk in chunked(items, batch_size):
            yield make_request(chunk, start=start, **kw)
            start += len(chunk)
    while True:
        yield None


class GuardClient:
    """Blocking client: the async client on a private event loop in a daemon thread."""

    def __init__(self, target: str | ClientConfig = "localhost:50051", **kwargs: Any):
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="reftguard-client", daemon=True)
        self._thread.start()
        self._aio: AsyncGuardClient = self._call(self._make(target, kwargs))

    @staticmethod
    async def _make(target, kwargs) -> AsyncGuardClient:
        return AsyncGuardClient(target, **kwargs)

    def _call(self, coro):
        return asyncio.run_coroutine_threadsafe(coro, self._loop).result()

    @property
    def retries(self) -> int:
        return self._aio.retries

    def score(self, items: Iterable[Any], **kw: Any) -> list[pb.Decision]:
        return self._call(self._aio.score(list(items), **kw))

    def feedback(self, id: str, **kw: Any) -> None:
        self._call(self._aio.feedback(id, **kw))

    def info(self) -> pb.InfoResponse:
        return self._call(self._aio.info())

    def health(self, service: str = "") -> bool:
        return self._call(self._aio.health(service))

    def score_stream(self, items: Iterable[Any], **kw: Any) -> Iterator[pb.Decision]:
        agen = self._aio.score_stream(items, **kw)
        try:
            while True:
                try:
                    yield self._call(agen.__anext__())
                except StopAsyncIteration:
                    return
        finally:
            self._call(agen.aclose())

    def close(self) -> None:
        if self._loop.is_running():
            self._call(self._aio.close())
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(timeout=5)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
