"""Assemble and run the guard server: bundle -> backend -> batcher -> servicer, health, metrics, drain.

Lifecycle: health is NOT_SERVING until the bundle is verified, loaded and a warmup batch has run;
SIGTERM/SIGINT flips it back to NOT_SERVING, stops taking RPCs (new ones get UNAVAILABLE), lets
in-flight work finish within `grace` seconds, and exits 0.
"""
from __future__ import annotations

import asyncio
import logging
import signal
from concurrent.futures import ThreadPoolExecutor

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection
from prometheus_client import start_http_server

from reftguard.bundle import GuardBundle
from reftguard.encoding import PromptEncoder
from reftguard.engine_ort import OrtBackend
from reftguard.server.auth import AuthInterceptor, Authenticator, check_exposure, load_tokens
from reftguard.server.batcher import TokenBudgetBatcher
from reftguard.server.config import ServerConfig
from reftguard.server.metrics import GuardMetrics
from reftguard.server.servicer import Engine, GuardServicer, guard_handler
from reftguard.v1 import guard_pb2

log = logging.getLogger("reftguard.server")
SERVICE = guard_pb2.DESCRIPTOR.services_by_name["Guard"].full_name
FAILURES_BEFORE_NOT_SERVING = 3


def resolve_bundle(cfg: ServerConfig) -> GuardBundle:
    if cfg.bundle:
        return GuardBundle.load(cfg.bundle)
    from reftguard.default_bundle import default_bundle  # needs the train extra on first build

    return default_bundle()


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
        m = self.metrics
        m.batch_size.observe(stats.size)
        m.batch_tokens.observe(stats.tokens)
        m.batch_padding.observe(stats.padding_ratio)
        m.queue_depth.set(self.batcher.queued_items)
        m.queue_tokens.set(self.batcher.queued_tokens)

    async def start(self) -> None:
        cfg = self.cfg
        self.auth = Authenticator(load_tokens(cfg.auth_token, cfg.auth_token_file), load_tokens(cfg.feedback_token, cfg.feedback_token_file))
        check_exposure(cfg, tokens=self.auth.required)  # before binding anything
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
        b = self.bundle
        backend = await loop.run_in_executor(None, lambda: OrtBackend(b, cfg.device, cfg.threads))
        encoder = PromptEncoder(b.tokenizer_path, b.prompt_format, b.max_tokens,
                                window_overlap=cfg.window_overlap, max_windows=cfg.max_windows)
        self.batcher = TokenBudgetBatcher(
            backend.run,
            ThreadPoolExecutor(1, thread_name_prefix="ort"),
            max_batch_size=cfg.max_batch_size,
            max_batch_tokens=cfg.max_batch_tokens,
            max_queue_delay_ms=cfg.max_queue_delay_ms,
            sort_window=cfg.sort_window,
            max_queue_items=cfg.max_queue_items,
            max_queue_tokens=cfg.max_queue_tokens,
            pad_id=b.pad_token_id,
            on_batch=self._on_batch,
            on_error=self._on_batch_error,
        )
        self.engine = Engine(b, encoder, self.batcher, ThreadPoolExecutor(cfg.tokenize_workers, thread_name_prefix="tok"), backend.provider)
        self.servicer.attach(self.engine)
        self.metrics.set_bundle(b.bundle_id, b.backbone, b.layer, backend.provider, b.expected_fpr)
        self.batcher.start()
        await self._warmup(encoder)
        await self._set_serving(True)
        log.info("serving bundle %s (layer %d, %s) on port %d", b.bundle_id, b.layer, backend.provider, self.port)

    async def reload(self) -> bool:
        """Re-read and verify the bundle at --bundle and swap it in (SIGHUP). A bundle that fails
        verification, or whose tokenizer differs (queued prompts were tokenized with the old one),
        is refused and the current bundle keeps serving."""
        loop = asyncio.get_running_loop()
        old = self.engine.bundle
        try:
            if not self.cfg.bundle:
                raise ValueError("reload needs an explicit --bundle path")
            new = await loop.run_in_executor(None, GuardBundle.load, self.cfg.bundle)
            if new.manifest["files"]["tokenizer.json"] != old.manifest["files"]["tokenizer.json"]:
                raise ValueError("the new bundle has a different tokenizer; restart the server to switch")
            backend = await loop.run_in_executor(None, lambda: OrtBackend(new, self.cfg.device, self.cfg.threads))
        except Exception as exc:  # keep serving the verified bundle we have
            log.error("reload refused, still serving %s: %s", old.bundle_id, exc)
            self.metrics.reloads.labels(result="refused").inc()
            return False
        self.batcher.swap_backend(backend.run)
        self.engine.bundle, self.engine.provider = new, backend.provider
        self.metrics.set_bundle(new.bundle_id, new.backbone, new.layer, backend.provider, new.expected_fpr)
        self.metrics.reloads.labels(result="ok").inc()
        log.info("reloaded: %s -> %s", old.bundle_id, new.bundle_id)
        return True

    async def _warmup(self, encoder: PromptEncoder) -> None:
        ids = encoder.encode(["warmup: how do I bake bread?", "warmup"], "right").ids
        await asyncio.gather(*(await self.batcher.submit(ids, wait=True)))

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
