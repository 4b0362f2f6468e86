"""Assemble and run the guard server: bundle -> backend -> batcher -> servicer, health, metrics, drain.

Lifecycle: health is NOT_SERVING until the bundle is verified, loaded and a warmup batch has run;
SIGTERM/SIGINT flips it back to NOT_SERVING, stops taking RPCs (new ones get UNAVAILABLE), lets
in-flight work finish within `grace` seconds, and exits 0.
"""
from __future__ import annotations

import asyncio
import gc
import logging
import signal
import time
import weakref
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection
from prometheus_client import start_http_server

from reftguard.bundle import GuardBundle
from reftguard.engines import Engine, make_engine
from reftguard.policy import PolicyError, load_policy
from reftguard.score_cache import ScoreCache
from reftguard.threads import cores, tokenizer_workers
from reftguard.server.auth import AuthInterceptor, Authenticator, check_exposure, load_tokens
from reftguard.server.batcher import TokenBudgetBatcher
from reftguard.server.config import ServerConfig
from reftguard.server.fair_pool import FairPool
from reftguard.server.metrics import GuardMetrics
from reftguard.server.served import ModelRefused, ServedModel, alive_models, load_model
from reftguard.server.servicer import GuardServicer, Runtime, guard_handler
from reftguard.v1 import guard_pb2

log = logging.getLogger("reftguard.server")
SERVICE = guard_pb2.DESCRIPTOR.services_by_name["Guard"].full_name
FAILURES_BEFORE_NOT_SERVING = 3


def build_engine(bundle: GuardBundle, cfg: ServerConfig) -> Engine:
    """The one place the server builds an inference engine (active, shadow, reload). reftguard.engines.make_engine
    chooses the engine and precision and sets `.label`, `.threshold` and `.expected_fpr` from the bundle's
    calibration for it (they win over the bundle's top-level ones)."""
    engine = make_engine(bundle, engine=cfg.engine, precision=cfg.precision, device=cfg.device, threads=cfg.threads,
                         allow_uncalibrated_precision=cfg.allow_uncalibrated_precision)
    if not engine.choice.calibrated:
        log.warning("bundle %s: serving %s at fp32's threshold %.4f, which this precision was not calibrated for; "
                    "run `reftguard calibrate --precision %s` on the bundle to give it its own",
                    bundle.bundle_id, engine.precision, engine.threshold, engine.precision)
    return engine


def resolve_bundle(cfg: ServerConfig) -> GuardBundle:
    if cfg.bundle:
        return GuardBundle.load(cfg.bundle)
    from reftguard.default_bundle import default_bundle  # the cached one: `reftguard serve` builds it first

    return default_bundle()


def _bundle_id_at(path: Path) -> str | None:
    """The bundle id the manifest at `path` declares (None if unreadable: the full load then says why)."""
    try:
        return GuardBundle.load(path.resolve(strict=True), verify=False).bundle_id
    except Exception:  # noqa: BLE001 - any unreadable bundle is left to _load, which refuses it with the reason
        return None


class GuardServer:
    def __init__(self, cfg: ServerConfig, bundle: GuardBundle | None = None):
        self.cfg = cfg
        self.bundle = bundle
        self.metrics = GuardMetrics(cfg.sources, cfg.metrics_window_s)
        self.health = health.aio.HealthServicer()
        self.server: grpc.aio.Server | None = None
        self.port: int | None = None
        self.metrics_port: int | None = None
        self._stopped = asyncio.Event()
        self._failures = 0
        self._draining = False

    async def _set_serving(self, serving: bool) -> None:
        status = health_pb2.HealthCheckResponse.SERVING if serving else health_pb2.HealthCheckResponse.NOT_SERVING
        for name in ("", SERVICE):
            await self.health.set(name, status)
        self.metrics.serving.set(1 if serving else 0)

    def _on_batch_error(self, exc: BaseException | None) -> None:
        # Repeated inference failures mean the backend is broken, not one bad batch: tell the load
        # balancer. Only the transitions change health, and never while draining (that stays NOT_SERVING).
        broken_before = self._failures >= FAILURES_BEFORE_NOT_SERVING
        self._failures = self._failures + 1 if exc is not None else 0
        broken = self._failures >= FAILURES_BEFORE_NOT_SERVING
        if broken != broken_before and not self._draining:
            asyncio.get_running_loop().create_task(self._set_serving(not broken))

    def _on_batch(self, stats) -> None:
        if stats.shadow:
            return  # shadow batches are not the service's batching (they run only when nothing else is queued)
        m = self.metrics
        m.batch_size.observe(stats.size)
        m.batch_tokens.observe(stats.tokens)
        m.batch_padding.observe(stats.padding_ratio)
        m.engine_busy.inc(stats.infer_s)
        m.engine_tokens.inc(stats.real_tokens)

    async def start(self) -> None:
        cfg = self.cfg
        self.auth = Authenticator(load_tokens(cfg.auth_token, cfg.auth_token_file), load_tokens(cfg.feedback_token, cfg.feedback_token_file))
        check_exposure(cfg, tokens=self.auth.required)  # before binding anything
        policy = load_policy(cfg.policy) if cfg.policy else None  # a bad policy file stops the start, before any model loads
        if not self.auth.reviewer_required:
            log.warning("no reviewer credential (--feedback-token / REFTGUARD_FEEDBACK_TOKEN or --feedback-token-file): any client "
                        "that may score may also send Feedback and labeled items, which move the false-positive and miss rates; "
                        "set one so that only reviewers do")
        # Installed with auth off too: it refuses calls with two `authorization` headers.
        interceptors = [AuthInterceptor(
            self.auth, exempt_health=cfg.auth_exempt_health, exempt_reflection=cfg.auth_exempt_reflection,
            on_reject=lambda code: self.metrics.errors.labels(code=code.name).inc(),
        )]
        self.server = grpc.aio.server(
            interceptors=interceptors,
            maximum_concurrent_rpcs=cfg.max_concurrent_rpcs,
            options=[
                ("grpc.max_receive_message_length", cfg.max_message_mb << 20),
                ("grpc.max_send_message_length", cfg.max_message_mb << 20),
            ],
        )
        health_pb2_grpc.add_HealthServicer_to_server(self.health, self.server)
        # Every service is registered before start (grpc.aio ignores handlers added later, with a warning);
        # Guard answers UNAVAILABLE until the bundle is attached, and health says NOT_SERVING meanwhile.
        self.servicer = GuardServicer(cfg, self.metrics, self.auth)
        self.server.add_generic_rpc_handlers((guard_handler(self.servicer),))
        reflection.enable_server_reflection((SERVICE, health.SERVICE_NAME, reflection.SERVICE_NAME), self.server)
        await self._set_serving(False)
        address = f"{cfg.host}:{cfg.port}"
        if cfg.tls_cert or cfg.tls_key:
            self.port = self.server.add_secure_port(address, tls_credentials(cfg))
        else:
            self.port = self.server.add_insecure_port(address)
        await self.server.start()  # health answers NOT_SERVING while the bundle loads
        loop = asyncio.get_running_loop()
        if self.bundle is None:
            self.bundle = await loop.run_in_executor(None, resolve_bundle, cfg)
        model = await loop.run_in_executor(None, self._load, self.bundle)  # verified and warmed up
        shadow = await self._load_shadow(None) if cfg.shadow_bundle else None
        self.batcher = TokenBudgetBatcher(
            ThreadPoolExecutor(1, thread_name_prefix="ort"),
            max_batch_size=cfg.max_batch_size,
            max_batch_tokens=cfg.max_batch_tokens,
            max_queue_delay_ms=cfg.max_queue_delay_ms,
            sort_window=cfg.sort_window,
            max_queue_items=cfg.max_queue_items,
            max_queue_tokens=cfg.max_queue_tokens,
            reserve=cfg.queue_reserve,
            client_share=cfg.max_client_queue_share,
            max_shadow_items=cfg.max_queue_items,
            shadow_min_share=cfg.shadow_min_share,
            shadow_batch_tokens=cfg.shadow_batch_tokens,
            on_batch=self._on_batch,
            on_error=self._on_batch_error,
        )
        self.metrics.models_alive.set_function(alive_models)
        # Read at scrape time: what is queued now, from admit to take (updating them after each batch
        # showed 0 while thousands of prompts waited).
        batcher = self.batcher
        self.metrics.queue_depth.set_function(lambda: batcher.queued_items)
        self.metrics.queue_tokens.set_function(lambda: batcher.queued_tokens)
        self.metrics.shadow_budget.set(cfg.shadow_max_disagreement)
        self.runtime = Runtime(model, self.batcher, FairPool(cfg.tokenize_workers or tokenizer_workers()),
                               shadow, cfg.shadow_fraction, policy,
                               ScoreCache(cfg.score_cache_entries) if cfg.score_cache_entries else None)
        self.metrics.set_bundle(model, shadow)
        self.servicer.attach(self.runtime)
        self.batcher.start()
        await self._set_serving(True)
        b = model.bundle
        log.info("serving bundle %s (layer %d, %s)%s; %d engine threads and %d tokenizer threads on %d cores; on port %d", b.bundle_id, b.layer,
                 model.provider, f", shadow {shadow.bundle_id}" if shadow else "", model.engine.threads, self.runtime.tokenize_pool.workers,
                 cores(), self.port)

    @property
    def model(self) -> ServedModel:
        """The active model (new requests are admitted under it)."""
        return self.runtime.model

    def _load(self, bundle) -> ServedModel:
        """Load, verify and warm up a complete model (blocking: run it in an executor)."""
        cfg = self.cfg
        return load_model(bundle, lambda b: build_engine(b, cfg), window_overlap=cfg.window_overlap, max_windows=cfg.max_windows,
                          window_tail=cfg.window_tail)

    async def _load_shadow(self, current: ServedModel | None) -> ServedModel | None:
        """The model at --shadow-bundle; None when that directory is gone (the rollout ended). A shadow
        that fails to load keeps `current` (it never affects what clients get)."""
        path = Path(self.cfg.shadow_bundle)
        if not path.exists():
            log.info("shadow bundle %s is gone: shadow scoring off", path)
            return None
        loop = asyncio.get_running_loop()
        if current is not None and await loop.run_in_executor(None, _bundle_id_at, path) == current.bundle_id:
            return current  # unchanged: a second engine for the same bundle would only hold memory
        try:
            return await loop.run_in_executor(None, self._load, path)
        except ModelRefused as exc:
            log.error("shadow bundle refused, %s: %s", f"keeping shadow {current.bundle_id}" if current else "no shadow", exc)
            self.metrics.reloads.labels(result="shadow_refused").inc()
            return current

    def swap(self, model: ServedModel, shadow: ServedModel | None | bool = False) -> None:
        """Make `model` (and `shadow`, unless False) the ones new requests are admitted under, in one
        step on the event loop. Queued jobs keep the models they were admitted under."""
        if shadow is False:
            shadow = self.runtime.shadow
        if shadow is not None and shadow.bundle_id == model.bundle_id:
            log.info("the shadow bundle %s is now the active one: shadow scoring off", shadow.bundle_id)
            shadow = None
        retired = [m for m in (self.runtime.model, self.runtime.shadow) if m is not None and m not in (model, shadow)]
        self.runtime.model, self.runtime.shadow = model, shadow
        self.metrics.set_bundle(model, shadow)
        for m in retired:
            asyncio.get_running_loop().create_task(self._collect(weakref.ref(m), m.bundle_id))

    @staticmethod
    async def _collect(ref: weakref.ref, bundle_id: str, every_s: float = 2.0, give_up_s: float = 600.0) -> None:
        """Free a retired model's engine once its last queued job is done. What still refers to it after
        that is cyclic garbage (finished frames, exceptions), which only a full collection frees; a
        long-running server may not run one for hours, and an engine holds hundreds of MB."""
        t_end = time.monotonic() + give_up_s
        while ref() is not None and time.monotonic() < t_end:
            await asyncio.sleep(every_s)
            gc.collect()
        if ref() is not None:
            log.warning("retired model %s is still referenced %.0f s after the swap", bundle_id, give_up_s)

    async def reload(self) -> bool:
        """SIGHUP: build a complete new model from --bundle (and --shadow-bundle), verified and warmed
        up, then swap it in atomically. A bundle that is missing, half-copied, tampered or cannot score
        is refused and the current model keeps serving. Jobs already queued finish on the model they
        were admitted under; that model is released when its last job is done."""
        if self.cfg.policy:
            try:
                self.runtime.policy = await asyncio.get_running_loop().run_in_executor(None, load_policy, self.cfg.policy)
                log.info("policy %s (sha256 %s…)", self.cfg.policy, self.runtime.policy.sha256[:12])
            except PolicyError as exc:  # keep the policy in force, as a refused bundle keeps the model
                log.error("policy refused, keeping sha256 %s…: %s", self.runtime.policy.sha256[:12] if self.runtime.policy else "none", exc)
        old = self.runtime.model
        try:
            if not self.cfg.bundle:
                raise ModelRefused("reload needs an explicit --bundle path")
            new = await asyncio.get_running_loop().run_in_executor(None, self._load, self.cfg.bundle)
        except ModelRefused as exc:  # keep serving the verified model we have
            log.error("reload refused, still serving %s: %s", old.bundle_id, exc)
            self.metrics.reloads.labels(result="refused").inc()
            return False
        shadow = await self._load_shadow(self.runtime.shadow) if self.cfg.shadow_bundle else None
        self.swap(new, shadow)
        self.metrics.reloads.labels(result="ok").inc()
        log.info("reloaded: %s -> %s%s", old.bundle_id, new.bundle_id, f" (shadow {self.runtime.shadow.bundle_id})" if self.runtime.shadow else "")
        return True

    async def stop(self, grace: float | None = None) -> None:
        """Drain: NOT_SERVING, refuse new RPCs, finish in-flight ones within `grace`, stop."""
        if self._stopped.is_set():
            return
        self._draining = True
        await self._set_serving(False)
        if self.cfg.drain_delay > 0:
            await asyncio.sleep(self.cfg.drain_delay)  # still serving: RPCs already on their way get answered
        grace = self.cfg.grace if grace is None else grace
        if hasattr(self, "servicer"):
            self.servicer.drain(grace)  # streams stop reading, answer what they read, then UNAVAILABLE
        if self.server is not None:
            await self.server.stop(grace)
        if hasattr(self, "batcher"):
            await self.batcher.stop()
            await self.servicer.stop_shadow()
            self.runtime.tokenize_pool.shutdown()
        self._stopped.set()

    async def wait(self) -> None:
        await self._stopped.wait()


def tls_credentials(cfg: ServerConfig) -> grpc.ServerCredentials:
    if not (cfg.tls_cert and cfg.tls_key):
        raise ValueError("TLS needs both --tls-cert and --tls-key")
    read = lambda p: open(p, "rb").read()  # noqa: E731
    client_ca = read(cfg.tls_client_ca) if cfg.tls_client_ca else None
    return grpc.ssl_server_credentials([(read(cfg.tls_key), read(cfg.tls_cert))], root_certificates=client_ca, require_client_auth=client_ca is not None)


def start_metrics(cfg: ServerConfig, metrics: GuardMetrics) -> int | None:
    if cfg.metrics_port < 0:
        return None
    server, _ = start_http_server(cfg.metrics_port, addr=cfg.metrics_host, registry=metrics.registry)
    return server.server_port


async def serve(cfg: ServerConfig) -> int:
    gs = GuardServer(cfg)
    gs.metrics_port = start_metrics(cfg, gs.metrics)
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, lambda s=sig: (log.info("signal %s: draining for up to %.0fs", s.name, cfg.grace), loop.create_task(gs.stop())))
    loop.add_signal_handler(signal.SIGHUP, lambda: loop.create_task(gs.reload()))
    await gs.start()
    await gs.wait()
    log.info("drained; exiting")
    return 0
