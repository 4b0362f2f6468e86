"""ServerConfig: every knob of `reftguard serve`, with a --flag and a REFTGUARD_* env twin (a deployment
configures the server through its environment: reftguard.config's rule)."""
from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from reftguard.config import option
from reftguard.encoding import DEFAULT_MAX_WINDOWS, DEFAULT_TRUNCATION, TRUNCATION_POLICIES
from reftguard.engines.selection import PRECISIONS


@dataclass
class ServerConfig:
    ENV_TWINS: ClassVar[bool] = True

    bundle: str = option("", "Guard bundle directory or .tar. Empty: the embedded default bundle (built on first use).")
    shadow_bundle: str = option("", "Candidate guard bundle scored beside --bundle, off the response path (clients never wait for it), for the rollout metrics (reftguard_shadow_*). Re-read on SIGHUP; a missing directory then turns shadow scoring off.")
    shadow_fraction: float = option(1.0, "Fraction of items (0..1, sampled per item) that --shadow-bundle also scores.")
    shadow_min_share: float = option(0.0, "Share of batches (0..1) given to queued shadow work even while live work waits. 0: the shadow runs only when the server is otherwise idle, so a saturated server scores nothing with it; 0.1 gives it every 10th batch, at that cost to live throughput.")
    shadow_batch_tokens: int = option(1024, "Token budget of one shadow batch (padded length x rows). A batch cannot be interrupted, so a live request that arrives while a shadow batch runs waits for it: small shadow batches bound that wait (0: --max-batch-tokens).")
    shadow_max_disagreement: float = option(0.05, "Disagreement rate between shadow and active verdicts above which the ReftguardShadowDisagreementHigh alert fires (exported as reftguard_shadow_disagreement_budget).")
    host: str = option("127.0.0.1", "Interface for the gRPC port. Loopback by default; on any other address the server needs --auth-token(-file) or --tls-client-ca, or --insecure-no-auth (the container image sets 0.0.0.0).")
    port: int = option(50051, "gRPC port (Guard, grpc.health.v1, reflection); 0 picks a free port.")
    metrics_host: str = option("127.0.0.1", "Interface for the Prometheus /metrics port (no auth: bind an internal interface; the container image sets 0.0.0.0).")
    metrics_port: int = option(9464, "Prometheus /metrics port; 0 picks a free port, -1 disables the endpoint.")
    device: str = option("auto", "Inference device: 'auto' uses CUDA when onnxruntime-gpu sees a GPU, else CPU.", choices=("auto", "cpu", "cuda"))
    engine: str = option("auto", "Inference engine: 'auto' picks the fastest calibrated one here (ort on CUDA, else openvino bf16 on a CPU with AMX/avx512_bf16, else ort fp32); 'ort' (onnxruntime) or 'openvino' (CPU).", choices=("auto", "ort", "openvino"))
    precision: str = option("auto", "Number format: 'auto' follows --engine; fp32 (reference), bf16 (openvino, AMX/avx512_bf16), fp16 (ort on CUDA, needs the bundle's fp16 graph), int8 (openvino, needs the bundle's int8 graph). Each is served at the bundle's calibration for it.", choices=PRECISIONS)
    allow_uncalibrated_precision: bool = option(False, "Serve a --precision the bundle has no calibration for, at the fp32 threshold (scores shift with precision, so verdicts near the threshold may change; a warning is logged). Without it such a precision is refused.")
    threads: int = option(0, "Inference threads on CPU (onnxruntime intra-op, openvino inference threads; 0 = all cores this process may use).")
    max_batch_size: int = option(32, "Most prompts in one inference batch.")
    max_batch_tokens: int = option(8192, "Token budget of one batch, counted as padded length x rows; bounds memory and latency per batch.")
    max_queue_delay_ms: float = option(2.0, "How long the batcher waits for more work to fill a batch once it has some; trades latency for batch size.")
    sort_window: int = option(256, "Queued prompts considered together when sorting by length to cut padding.")
    max_queue_items: int = option(4096, "Prompts waiting for inference before unary calls are rejected with RESOURCE_EXHAUSTED (streams wait).")
    max_queue_tokens: int = option(1 << 20, "Tokens waiting for inference before unary calls are rejected (streams wait).")
    queue_reserve: float = option(0.25, "Share of both queue bounds that streams (which wait for room) leave free for unary calls (which fail fast), so saturating streams cannot make every unary call RESOURCE_EXHAUSTED.")
    max_client_batch: int = option(256, "Most items in one ScoreRequest; more is INVALID_ARGUMENT.")
    max_turns_per_item: int = option(64, "Most messages in one chat item, of every role (each scored turn is a prompt; unscored roles still cost parsing); more is INVALID_ARGUMENT, checked from the count before any message is read.")
    max_prompts_per_request: int = option(1024, "Most prompts one ScoreRequest may become: its messages of every role, then the scored turns' windows once encoded; more is INVALID_ARGUMENT. A request must also fit the queue bounds.")
    max_request_tokens: int = option(131072, "Most tokens one ScoreRequest may become (its prompts' lengths summed, windows included: the cost of scoring it); more is INVALID_ARGUMENT. Checked from the texts' lengths before tokenizing (no token is longer than the vocabulary's longest entry), then exactly while encoding. The default fits a full request of 256 single-window prompts of 512 tokens.")
    max_client_queue_share: float = option(0.5, "Share (0..1] of both queue bounds one client may hold: its unary calls beyond it get RESOURCE_EXHAUSTED, its streams wait; a client holding nothing may still queue one request. Keeps one identity from filling the queue for all.")
    max_id_bytes: int = option(512, "Longest item id (Score, ScoreStream) or Feedback id, in UTF-8 bytes; longer is INVALID_ARGUMENT (ids are echoed in responses and logs).")
    max_chars: int = option(2_000_000, "Most characters in one item's text (checked before tokenizing); more is INVALID_ARGUMENT. Shorter over-long prompts follow the truncation policy.")
    truncation: str = option(DEFAULT_TRUNCATION, "Default policy for prompts over the bundle's max_tokens: window (score overlapping windows, keep the highest), error, left or right.", choices=TRUNCATION_POLICIES)
    max_windows: int = option(DEFAULT_MAX_WINDOWS, "Most windows one user turn may be split into under truncation window, the tail window included; more is INVALID_ARGUMENT (0 = no limit). Each window is a prompt in the batcher.")
    window_overlap: int = option(-1, "Tokens shared by consecutive windows of a long user turn; -1 = a quarter of the window (max_tokens minus the template).")
    window_tail: int = option(-1, "A windowed user turn also gets a short last window holding only its final this-many tokens, so a request at the end of a long context is scored nearly alone; -1 = 32 tokens (chosen on calib-half long-context dev prompts) or a quarter of the window if less, 0 = no tail window.")
    score_cache_entries: int = option(100_000, "Scored rows remembered (bundle, engine, role, token ids: a row's score depends on nothing else), so a repeated turn, such as one system prompt in every record or a duplicated row, is scored once; ~200 bytes each, least recently used first out. 0: off.")
    policy: str = option("", "Policy file (TOML): flag/review thresholds, FPR targets and harm categories per request `source` (docs/curation.md). Checked at start (a bad file stops the server) and re-read on SIGHUP (a bad file is refused; the policy in force stays). Info reports its sha256.")
    sources: list = option(["default", "ingest", "scan", "api", "review"], "Allowed `source` tags for metric labels; anything else is counted as 'other'.")
    metrics_window_s: float = option(300.0, "Sliding window of the flag-rate, false-positive-rate and miss-rate gauges, in seconds.")
    tokenize_workers: int = option(0, "Threads that tokenize requests off the event loop; 0: one per 8 cores given, at least 1 (the engine gets every core: tokenizing takes about a hundredth of the time, docs/results.md).")
    grace: float = option(20.0, "Seconds to finish in-flight work after SIGTERM before exiting.")
    drain_delay: float = option(0.0, "Seconds to keep serving after SIGTERM with health NOT_SERVING, so load balancers stop routing here before the port closes (set ~5 behind a Kubernetes Service).")
    max_concurrent_rpcs: int = option(1024, "Concurrent RPCs the server accepts before new ones get RESOURCE_EXHAUSTED.")
    max_message_mb: int = option(16, "Largest gRPC message accepted or sent, in MiB.")
    max_streams_per_client: int = option(64, "Concurrent ScoreStream calls one client (token, else IP) may hold; more get RESOURCE_EXHAUSTED.")
    tls_cert: str = option("", "PEM server certificate; with --tls-key enables TLS on the gRPC port.")
    tls_key: str = option("", "PEM private key of --tls-cert.")
    tls_client_ca: str = option("", "PEM CA bundle; when set, clients must present a certificate it signed (mutual TLS).")
    auth_token: str = option("", "Bearer token clients must send (env REFTGUARD_AUTH_TOKEN keeps it out of `ps`); empty with no token file disables auth.", secret=True)
    auth_token_file: str = option("", "File of accepted bearer tokens, one per line (rotation: list old and new).")
    feedback_token: str = option("", "Reviewer bearer token: when set (or --feedback-token-file), only callers presenting it may call Feedback (others get PERMISSION_DENIED); it is accepted wherever a client token is. Prefer the env twin REFTGUARD_FEEDBACK_TOKEN.", secret=True)
    feedback_token_file: str = option("", "File of accepted reviewer tokens, one per line (rotation: list old and new).")
    feedback_per_minute: int = option(120, "Feedback calls one caller (token, else IP) may make per minute (a bucket of that size refilled evenly); more is RESOURCE_EXHAUSTED. 0 = no limit.")
    insecure_no_auth: bool = option(False, "Allow serving gRPC on a non-loopback --host with no bearer token and no client certificates (the server refuses to start there otherwise, and warns when this is set).")
    auth_exempt_health: bool = option(True, "Let grpc.health.v1 through without a token (load balancers and probes).")
    auth_exempt_reflection: bool = option(True, "Let server reflection through without a token.")
