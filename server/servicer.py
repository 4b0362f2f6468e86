"""The gRPC transport: Guard servicer (Score, ScoreStream, Feedback, Info).

Requests are validated, tokenized in a thread pool, handed to the batcher and turned into decisions.
The servicer only maps protobuf to and from the scoring core's types: rows (a user turn, or one window
of a long one) are scored by the batcher and `decide_items` turns them into one result per item.
"""
from __future__ import annotations

import asyncio
import json
import logging
import time
from dataclasses import dataclass

import grpc

from reftguard import __version__
from reftguard.encoding import Budget, OverBudget, PromptRejected
from reftguard.policy import Policy
from reftguard.score_cache import ScoreCache
from reftguard.scoring import Scored, decide
from reftguard.server.auth import Authenticator, AuthError, Caller, RateLimit, cert_subject
from reftguard.server.batcher import DeadlineExpired, Overloaded, PromptResult, ShuttingDown, TokenBudgetBatcher, TooLarge, client_of
from reftguard.server.config import ServerConfig
from reftguard.server.fair_pool import FairPool, encode_fairly
from reftguard.server.metrics import GuardMetrics
from reftguard.server.served import ServedModel
from reftguard.server.shadow import ShadowScorer
from reftguard.server.validation import LABEL_NAMES, RequestError, check_id, clip, invalid, over_limit, parse_score_request
from reftguard.server.wire import too_many_messages
from reftguard.v1 import guard_pb2 as pb
from reftguard.v1 import guard_pb2_grpc

log = logging.getLogger("reftguard.servicer")
STREAM_IN_FLIGHT = 8  # requests of one stream being worked on before the server stops reading it
RETRY_AFTER_MS = "100"
DRAINING = "server is draining; reconnect and re-send unanswered requests"
# Share of the grace period that what the streams have read ahead may take to score (the rest is margin),
# and how long before the grace period ends unanswered calls are told to re-send (gRPC cancels them then).
DRAIN_SHARE = 0.5
CUTOFF_MARGIN_S = 1.0


def discard(fut: asyncio.Future) -> None:
    """Cancel an abandoned future or task and retrieve its outcome, so asyncio never logs
    'exception was never retrieved' for it."""
    fut.cancel()
    fut.add_done_callback(lambda f: f.cancelled() or f.exception())


@dataclass
class Admitted:
    """A ScoreRequest that passed validation and was queued: what answering it needs."""

    model: ServedModel  # the model it was admitted under: its encoder, engine, threshold and id decide it
    request: object
    parsed: object
    enc: object
    futures: list
    t0: float
    t_tok: float
    caller: str = ""  # the batcher's fair-share key (unary:/stream: + client identity)

    @property
    def tokens(self) -> int:
        return sum(self.enc.lengths)


DRAINED = object()  # what `_unless_draining` returns when draining started first


class BadMessage:
    """What the safe deserializer returns for bytes that are not a valid message (e.g. invalid UTF-8)."""

    def __init__(self, error: str):
        self.error = error


@dataclass
class Runtime:
    """What scoring needs once a model is loaded (the servicer holds config, metrics and auth). A
    reload replaces `model` (and `shadow`) whole; a request reads `model` once, when it is admitted."""

    model: ServedModel
    batcher: TokenBudgetBatcher
    tokenize_pool: FairPool
    shadow: ServedModel | None = None
    shadow_fraction: float = 1.0
    policy: Policy | None = None  # per-source thresholds and categories (serve --policy)
    cache: ScoreCache | None = None  # scored rows (reftguard/score_cache.py); None: off


class GuardServicer(guard_pb2_grpc.GuardServicer):
    def __init__(self, cfg: ServerConfig, metrics: GuardMetrics, auth: Authenticator):
        """Registered with the gRPC server before it starts; answers UNAVAILABLE until `attach`."""
        self.cfg, self.metrics, self.auth = cfg, metrics, auth
        self.rt: Runtime | None = None
        self.shadow = ShadowScorer(metrics)
        self._feedback_rate = RateLimit(cfg.feedback_per_minute)
        self._streams: dict[str, int] = {}  # open ScoreStreams per client identity
        loop = asyncio.get_running_loop()
        # Resolved on SIGTERM (after the drain delay): streams stop reading, answer what they read, then
        # end with UNAVAILABLE + DRAINING. `_cutoff` resolves shortly before the grace period ends: what
        # is still unanswered then is told to re-send, rather than cut by gRPC's "Cancelling all calls".
        self._draining: asyncio.Future = loop.create_future()
        self._cutoff: asyncio.Future = loop.create_future()

    def attach(self, rt: Runtime) -> None:
        """The model is loaded: start answering."""
        self.rt = rt

    def _runtime(self) -> Runtime:
        if self.rt is None:
            raise RequestError(grpc.StatusCode.UNAVAILABLE, "the server is still loading its bundle; retry shortly")
        return self.rt

    async def stop_shadow(self) -> None:
        await self.shadow.stop()

    def drain(self, grace: float) -> None:
        """Start draining: called once, on SIGTERM, just before the gRPC server stops with `grace`."""
        if self._draining.done():
            return
        self._draining.set_result(None)
        loop = asyncio.get_running_loop()
        loop.call_later(max(0.0, grace - min(CUTOFF_MARGIN_S, grace / 4)), lambda: self._cutoff.done() or self._cutoff.set_result(None))

    # -- RPCs ------------------------------------------------------------------------------------
    async def Score(self, request, context):
        async def work():
            key = "unary:" + self._caller(context).identity  # the batcher's fair share: unary calls apart from streams
            return await self._answer(await self._admit(request, context, wait=False, caller=key))

        return await self._guarded("Score", context, work())

    async def ScoreStream(self, request_iterator, context):
        self.metrics.requests.labels(method="ScoreStream").inc()
        try:
            who = self._caller(context).identity
        except RequestError as err:
            await self._abort(context, err)
        if self.rt is None:
            await self._abort(context, RequestError(grpc.StatusCode.UNAVAILABLE, "the server is still loading its bundle; retry shortly"))
        if self._streams.get(who, 0) >= self.cfg.max_streams_per_client:
            await self._abort(context, RequestError(grpc.StatusCode.RESOURCE_EXHAUSTED,
                              f"{self.cfg.max_streams_per_client} concurrent streams from this client; close one first"))
        self._streams[who] = self._streams.get(who, 0) + 1
        try:
            async for resp in self._stream(request_iterator, context, "stream:" + who):
                yield resp
        except asyncio.CancelledError:
            self._count_cancelled(context)
            raise
        finally:
            self._streams[who] -= 1
            if not self._streams[who]:
                del self._streams[who]

    async def _stream(self, request_iterator, context, caller: str):
        """One response per request, in order. A reader task admits requests in order (tokenize, queue)
        while this generator answers them; the reader stops reading (HTTP/2 flow control then pushes back
        on the client) when the batcher queue is full, when STREAM_IN_FLIGHT requests or this stream's
        share of what the grace period can score are read but unanswered, and at drain."""
        answers: asyncio.Queue = asyncio.Queue(maxsize=STREAM_IN_FLIGHT)  # (answer task, tokens) | RequestError | None
        unanswered = [0]  # tokens read and admitted but not answered yet
        room = asyncio.Event()

        async def read():
            it = request_iterator.__aiter__()
            end = None
            last = 0  # tokens of the last request: the best guess at the next one's size
            try:
                while True:
                    while unanswered[0] and unanswered[0] + last > self._read_ahead_tokens():
                        room.clear()
                        if await self._unless_draining(room.wait()) is DRAINED:
                            end = RequestError(grpc.StatusCode.UNAVAILABLE, DRAINING)
                            return
                    req = await self._unless_draining(it.__anext__())
                    if req is DRAINED:
                        end = RequestError(grpc.StatusCode.UNAVAILABLE, DRAINING)
                        return
                    try:
                        admitted = await self._admit(req, context, wait=True, caller=caller)
                    except RequestError as err:
                        end = err
                        return
                    last = admitted.tokens
                    unanswered[0] += last
                    await answers.put((asyncio.ensure_future(self._answer(admitted)), admitted.tokens))
            except StopAsyncIteration:
                return
            finally:
                await answers.put(end)

        reader = asyncio.ensure_future(read())
        try:
            while True:
                item = await answers.get()
                if item is None:
                    break
                if isinstance(item, RequestError):
                    await self._abort(context, item)
                task, tokens = item
                try:
                    resp = await task
                except RequestError as err:
                    await self._abort(context, err)
                unanswered[0] -= tokens
                room.set()
                yield resp
            await reader
        finally:
            discard(reader)
            while not answers.empty():
                item = answers.get_nowait()
                if isinstance(item, tuple):
                    discard(item[0])

    def _read_ahead_tokens(self) -> int:
        """Tokens one stream may have read but not answered: its share of what the batcher can score in
        DRAIN_SHARE of the grace period, at least one full batch (so a lone stream still fills batches)."""
        share = self.rt.batcher.can_score(self.cfg.grace * DRAIN_SHARE) // max(1, sum(self._streams.values()))
        return max(self.cfg.max_batch_tokens, share)

    async def _unless_draining(self, aw):
        """`await aw`, or DRAINED (with `aw` cancelled) if draining starts first."""
        return await self._until(aw, self._draining, DRAINED)

    async def _before_cutoff(self, aw):
        """`await aw`, or UNAVAILABLE + DRAINING (with `aw` cancelled) if the drain cut-off comes first."""
        out = await self._until(aw, self._cutoff, DRAINED)
        if out is DRAINED:
            raise RequestError(grpc.StatusCode.UNAVAILABLE, DRAINING)
        return out

    @staticmethod
    async def _until(aw, event: asyncio.Future, marker):
        fut = asyncio.ensure_future(aw)
        if not event.done():
            try:
                await asyncio.wait((fut, event), return_when=asyncio.FIRST_COMPLETED)
            except asyncio.CancelledError:
                discard(fut)
                raise
        if fut.done():
            return fut.result()
        discard(fut)
        return marker

    async def Feedback(self, request, context):
        async def work():
            self._check_reviewer(self._caller(context))  # before anything else: callers without the right get nothing
            if isinstance(request, BadMessage):
                raise invalid(f"request is not a valid FeedbackRequest: {request.error}")
            check_id(request.id, "feedback", self.cfg.max_id_bytes)
            if request.served not in (pb.ALLOW, pb.FLAG):
                raise invalid(f"served must be ALLOW or FLAG, got {request.served}")
            if request.reviewed not in LABEL_NAMES:
                raise invalid(f"reviewed must be BENIGN or HARMFUL, got {request.reviewed}")
            self.metrics.record_feedback(request.served == pb.FLAG, LABEL_NAMES[request.reviewed])
            self.shadow.feedback(request.id, LABEL_NAMES[request.reviewed])
            # Client strings are cut and shown as reprs: no huge lines, no forged ones (newlines stay escaped).
            log.info("feedback id=%r served=%s reviewed=%s reviewer=%r source=%r", clip(request.id), pb.Verdict.Name(request.served),
                     pb.Label.Name(request.reviewed), clip(request.reviewer), clip(request.source))
            return pb.FeedbackResponse()

        return await self._guarded("Feedback", context, work())

    async def Info(self, request, context):
        return await self._guarded("Info", context, self._info(context))

    async def _info(self, context) -> pb.InfoResponse:
        rt = self._runtime()
        cfg, m = self.cfg, rt.model  # one read: every field describes the same model
        # The candidate under evaluation is the operators' business: with a reviewer credential configured,
        # only reviewers see it (a client that sees it could steer what it is judged on).
        b, shadow = m.bundle, (rt.shadow if self._is_reviewer(context) else None)
        return pb.InfoResponse(
            bundle_id=b.bundle_id,
            manifest_json=json.dumps(b.manifest, sort_keys=True),
            threshold=m.threshold,
            expected_fpr=nan_if_none(m.expected_fpr),
            version=__version__,
            provider=m.provider,
            limits=pb.Limits(
                max_client_batch=cfg.max_client_batch,
                max_tokens=b.max_tokens,
                max_chars=cfg.max_chars,
                max_batch_size=cfg.max_batch_size,
                max_batch_tokens=cfg.max_batch_tokens,
                max_queue_items=cfg.max_queue_items,
                max_windows=m.encoder.max_windows,
                max_turns_per_item=cfg.max_turns_per_item,
                max_prompts_per_request=cfg.max_prompts_per_request,
                max_queue_tokens=cfg.max_queue_tokens,
                max_id_bytes=cfg.max_id_bytes,
                max_message_mb=cfg.max_message_mb,
                max_streams_per_client=cfg.max_streams_per_client,
                feedback_per_minute=cfg.feedback_per_minute,
                max_concurrent_rpcs=cfg.max_concurrent_rpcs,
                max_request_tokens=cfg.max_request_tokens,
                max_client_queue_share=cfg.max_client_queue_share,
            ),
            sources=sorted(self.metrics.sources),
            layer=b.layer,
            backbone=b.backbone,
            active=bundle_info(m),
            shadow=bundle_info(shadow) if shadow else None,
            shadow_fraction=rt.shadow_fraction if shadow else 0.0,
            policy_sha256=rt.policy.sha256 if rt.policy else "",
        )

    # -- helpers ---------------------------------------------------------------------------------
    async def _guarded(self, method: str, context, coro):
        self.metrics.requests.labels(method=method).inc()
        try:
            return await coro
        except RequestError as err:
            await self._abort(context, err)
        except asyncio.CancelledError:
            self._count_cancelled(context)
            raise

    def _count_cancelled(self, context) -> None:
        """gRPC cancelled the call: its deadline passed or the client went away (or the grace period
        ended). The call gets no status from us, but it must not be invisible in the error counter."""
        remaining = context.time_remaining()
        expired = remaining is not None and remaining <= 0
        self.metrics.errors.labels(code="DEADLINE_EXCEEDED" if expired else "CANCELLED").inc()

    def _caller(self, context) -> Caller:
        """The verified caller (the interceptor already refused the unauthenticated)."""
        try:
            return self.auth.identify(context.invocation_metadata(), context.peer(), cert_subject(context))
        except AuthError as err:
            raise RequestError(err.code, err.message) from err

    def _is_reviewer(self, context) -> bool:
        """Whether this caller holds the reviewer credential: it alone moves the FP and miss metrics and sees
        the shadow. Without a configured credential everyone does (the server warned at start)."""
        return not self.auth.reviewer_required or self._caller(context).reviewer

    def _check_reviewer(self, caller: Caller) -> None:
        """Feedback moves the false-positive and miss rates: reviewers only (when configured), rate-limited."""
        if self.auth.reviewer_required and not caller.reviewer:
            raise RequestError(grpc.StatusCode.PERMISSION_DENIED, "Feedback needs the reviewer credential (--feedback-token); "
                               "send it as 'authorization: Bearer <reviewer token>'")
        wait_s = self._feedback_rate.wait_s(caller.identity)
        if wait_s > 0:
            raise RequestError(grpc.StatusCode.RESOURCE_EXHAUSTED, f"more than {self.cfg.feedback_per_minute} Feedback calls a minute from "
                               "this caller (feedback_per_minute: --feedback-per-minute / REFTGUARD_FEEDBACK_PER_MINUTE)",
                               retry_after_ms=max(1, int(wait_s * 1000)))

    async def _abort(self, context, err: RequestError):
        self.metrics.errors.labels(code=err.code.name).inc()
        if err.code == grpc.StatusCode.RESOURCE_EXHAUSTED:
            context.set_trailing_metadata((("retry-after-ms", str(err.retry_after_ms or RETRY_AFTER_MS)),))
        await context.abort(err.code, err.message)

    async def _admit(self, request, context, *, wait: bool, caller: str) -> Admitted:
        """Validate, tokenize and queue one request (wait=True: until the queue has room) under the
        active model, read once: it encodes the request, scores it and decides it."""
        rt = self._runtime()
        model = rt.model
        t0 = time.monotonic()
        if isinstance(request, BadMessage):
            raise invalid(f"request is not a valid ScoreRequest: {request.error}")
        if isinstance(request, Oversized):
            raise request.error
        parsed = parse_score_request(request, self.cfg, model.thresholds)
        if any(parsed.labels) and not self._is_reviewer(context):
            # Labels move the false-positive and miss rates (live and shadow), so only reviewers' count:
            # the others are dropped here and counted apart.
            self.metrics.labels_ignored.inc(sum(label is not None for label in parsed.labels))
            parsed.labels = [None] * len(parsed.labels)
        budget = Budget(rows=self.cfg.max_prompts_per_request, tokens=self.cfg.max_request_tokens)
        try:
            enc = await encode_fairly(rt.tokenize_pool, caller, model.encoder, [t.text for t in parsed.turns], parsed.truncation, budget)
        except OverBudget as exc:  # from the texts' lengths, or while encoding: the rest is never tokenized
            field = "max_prompts_per_request" if exc.field == "rows" else "max_request_tokens"
            raise over_limit(f"{exc.what} (counting every turn's windows)", getattr(self.cfg, field), field,
                             " (split the request; every message and window is a prompt)") from exc
        except PromptRejected as exc:  # too long under 'error', or too many windows
            turn = parsed.turns[exc.index]
            where = f"item {turn.item} (id {request.items[turn.item].id!r})" + (f" message {turn.turn}" if turn.turn >= 0 else "")
            raise invalid(f"{where} is too long: {exc}") from exc
        t_tok = time.monotonic()
        remaining = context.time_remaining()
        deadline = None if remaining is None else time.monotonic() + remaining
        roles = [parsed.turns[i].role for i in enc.text]  # each row is scored with its turn's role feature
        try:  # every window is a prompt
            futures = await self._before_cutoff(self._submit(rt, model, enc.ids, roles, caller=caller, wait=wait, deadline=deadline))
        except Overloaded as exc:
            raise RequestError(grpc.StatusCode.RESOURCE_EXHAUSTED, str(exc)) from exc
        except TooLarge as exc:
            raise over_limit(str(exc), exc.limit, exc.field, " (split the request)") from exc
        return Admitted(model, request, parsed, enc, futures, t0, t_tok, caller)

    async def _submit(self, rt: Runtime, model: ServedModel, ids: list[list[int]], roles: list[str], **kw) -> list[asyncio.Future]:
        """One future per row. With the cache, rows scored before resolve at once and each distinct row of the
        request is queued once (its copies share its future); what the engine scores is remembered."""
        cache = rt.cache
        if cache is None:
            return await rt.batcher.submit(ids, model=model, roles=roles, **kw)
        loop = asyncio.get_running_loop()
        keys, found, todo = cache.lookup(f"{model.bundle_id}/{model.provider}", roles, ids)
        out: list[asyncio.Future | None] = [None] * len(ids)
        for i, key in enumerate(keys):
            if key in found:
                out[i] = loop.create_future()
                out[i].set_result(PromptResult(found[key].score, 0.0, 0.0, found[key].category))
        self.metrics.cache_rows.labels(result="reused").inc(len(ids) - len(todo))
        self.metrics.cache_rows.labels(result="scored").inc(len(todo))
        if todo:
            first = [rows[0] for rows in todo.values()]
            futures = await rt.batcher.submit([ids[i] for i in first], model=model, roles=[roles[i] for i in first], **kw)
            for (key, rows), fut in zip(todo.items(), futures):
                fut.add_done_callback(lambda f, key=key: cache.put(key, f.result()) if not f.cancelled() and f.exception() is None else None)
                for i in rows:
                    out[i] = fut
        return out

    async def _answer(self, a: Admitted) -> pb.ScoreResponse:
        """Wait for an admitted request's prompts (until the drain cut-off at most) and decide its items."""
        try:
            results = await self._before_cutoff(asyncio.gather(*a.futures))
        except DeadlineExpired as exc:
            raise RequestError(grpc.StatusCode.DEADLINE_EXCEEDED, str(exc)) from exc
        except ShuttingDown as exc:
            raise RequestError(grpc.StatusCode.UNAVAILABLE, str(exc)) from exc
        except RequestError:
            raise
        except Exception as exc:  # the backend failed on this batch
            raise RequestError(grpc.StatusCode.INTERNAL, f"inference failed: {type(exc).__name__}: {exc}") from exc
        # The source's policy first, then the request's own threshold and refusal-example choice.
        policy = self.rt.policy.for_source(a.parsed.source) if self.rt.policy else None
        base = policy.thresholds(a.model.thresholds, a.model.fpr_curves) if policy else a.model.thresholds
        thresholds = base.with_user(a.parsed.threshold, a.parsed.flag_refusal_examples)
        scored = decide([r.score for r in results], a.parsed.turns, a.enc, thresholds, a.model.notes_of(results))
        if policy:
            scored = [policy.verdict(s) for s in scored]
        resp = self._respond(a, scored, results)
        if self.rt.shadow is not None:
            self.shadow.offer(self.rt, a, scored, self.metrics.source_label(a.parsed.source), client_of(a.caller))
        return resp

    def _respond(self, a: Admitted, scored: list[Scored], results: list[PromptResult]) -> pb.ScoreResponse:
        """Decisions of the model that scored the request (`a.model`), whatever is active by now."""
        request, parsed, t0, t_tok = a.request, a.parsed, a.t0, a.t_tok
        source = self.metrics.source_label(parsed.source)
        decisions = []
        # REVIEW only to clients that said they understand it; others get FLAG, as before the band existed.
        review = pb.REVIEW if request.accept_review else pb.FLAG
        for item, r, label in zip(request.items, scored, parsed.labels):
            decisions.append(
                pb.Decision(
                    id=item.id,
                    verdict=pb.FLAG if r.flag else review if r.review else pb.ALLOW,
                    score=r.score,
                    threshold=r.threshold,
                    margin=r.score - r.threshold,
                    truncated=r.truncated,
                    num_tokens=r.num_tokens,
                    turn=r.turn,
                    window=r.window,
                    num_windows=r.num_windows,
                    role=r.role,
                    reason=r.reason,
                    review_threshold=r.review_threshold,
                    category=r.category,
                    category_probability=r.category_p,
                )
            )
            self.metrics.record_decision(source, r.flag, r.score, label, r.reason, r.role, r.review, r.category)
            if r.truncated:
                self.metrics.truncated.inc()
        now = time.monotonic()
        queue_s = max(r.queue_s for r in results)
        infer_s = max(r.infer_s for r in results)
        m = self.metrics.phase
        m.labels(phase="tokenize").observe(t_tok - t0)
        m.labels(phase="queue").observe(queue_s)
        m.labels(phase="infer").observe(infer_s)
        m.labels(phase="total").observe(now - t0)
        timing = pb.Timing(queue_ms=queue_s * 1e3, tokenize_ms=(t_tok - t0) * 1e3, infer_ms=infer_s * 1e3, total_ms=(now - t0) * 1e3)
        return pb.ScoreResponse(decisions=decisions, bundle_id=a.model.bundle_id, timing=timing)


def nan_if_none(x: float | None) -> float:
    return float("nan") if x is None else x


def bundle_info(m: ServedModel) -> pb.BundleInfo:
    b = m.bundle
    return pb.BundleInfo(bundle_id=b.bundle_id, threshold=m.threshold, provider=m.provider, layer=b.layer, backbone=b.backbone,
                         expected_fpr=nan_if_none(m.expected_fpr), role_thresholds=m.role_thresholds,
                         review_thresholds=m.review_thresholds, categories=m.category_head.labels if m.category_head else [],
                         manifest_json=json.dumps(b.manifest, sort_keys=True))


class Oversized:
    """What the deserializer returns for a ScoreRequest with too many messages, found before parsing."""

    def __init__(self, error: RequestError):
        self.error = error


def safe_deserializer(cls, limits=None):
    def parse(data: bytes):
        if limits is not None:
            why = too_many_messages(data, limits.max_turns_per_item, limits.max_prompts_per_request)
            if why:
                field = "max_turns_per_item" if why.startswith("item") else "max_prompts_per_request"
                return Oversized(over_limit(why, getattr(limits, field), field, " (every role counts; split the request)"))
        try:
            return cls.FromString(data)
        except Exception as exc:  # DecodeError, invalid UTF-8 in a string field, ...
            return BadMessage(f"{type(exc).__name__}: {exc} (is every string valid UTF-8?)")

    return parse


def guard_handler(servicer: GuardServicer) -> grpc.GenericRpcHandler:
    """The Guard service with deserializers that turn undecodable bytes into INVALID_ARGUMENT."""
    ser = lambda msg: msg.SerializeToString()  # noqa: E731
    handlers = {
        "Score": grpc.unary_unary_rpc_method_handler(servicer.Score, safe_deserializer(pb.ScoreRequest, servicer.cfg), ser),
        "ScoreStream": grpc.stream_stream_rpc_method_handler(servicer.ScoreStream, safe_deserializer(pb.ScoreRequest, servicer.cfg), ser),
        "Feedback": grpc.unary_unary_rpc_method_handler(servicer.Feedback, safe_deserializer(pb.FeedbackRequest), ser),
        "Info": grpc.unary_unary_rpc_method_handler(servicer.Info, safe_deserializer(pb.InfoRequest), ser),
    }
    return grpc.method_handlers_generic_handler("reftguard.v1.Guard", handlers)
