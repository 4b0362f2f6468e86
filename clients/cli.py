"""`reftguard score`, `reftguard health` and `reftguard info`: the client side of the CLI (client extra only)."""
from __future__ import annotations

import argparse
import json
import sys

import grpc

from reftguard.clients.client import ClientConfig, GuardClient
from reftguard.clients.requests import TRUNCATION_CHOICES
from reftguard.v1 import guard_pb2 as pb


DEFAULT_TARGET = "localhost:50051"


def target_args(p: argparse.ArgumentParser) -> None:
    # The service address and credential are the client commands' only env twins (reftguard.config's rule).
    p.add_argument("--target", default=None, help=f"HOST:PORT of the guard service (default: env REFTGUARD_TARGET, else {DEFAULT_TARGET}).")
    p.add_argument("--token", default=None, help="Bearer token (default: env REFTGUARD_TOKEN).")
    p.add_argument("--tls-ca", default=None, help="CA certificate (PEM) to verify the server; enables TLS.")
    p.add_argument("--tls-cert", default=None, help="Client certificate (PEM) for mutual TLS.")
    p.add_argument("--tls-key", default=None, help="Client key (PEM) for mutual TLS.")
    p.add_argument("--timeout", type=float, default=30.0, help="Seconds per RPC.")


def client_config(ns) -> ClientConfig:
    """The ClientConfig from the flags of `target_args`; a flag wins over its env twin."""
    import os

    target = ns.target or os.environ.get("REFTGUARD_TARGET") or DEFAULT_TARGET
    return ClientConfig(target=target, timeout=ns.timeout, token=ns.token or os.environ.get("REFTGUARD_TOKEN"),
                        tls_ca=ns.tls_ca, tls_cert=ns.tls_cert, tls_key=ns.tls_key)


def _client(ns) -> GuardClient:
    return GuardClient(client_config(ns))


def score_args(p: argparse.ArgumentParser) -> None:
    target_args(p)
    p.add_argument("texts", nargs="*", help="Prompts to score; none (or '-') reads one prompt per line from stdin.")
    p.add_argument("--threshold", type=float, default=None, help="Override the bundle threshold for this call.")
    p.add_argument("--source", default="", help="Source tag for the server's metrics (must be on its allow-list).")
    p.add_argument("--truncation", choices=TRUNCATION_CHOICES, default=None,
                   help="Policy for prompts over max_tokens (default: the server's, window: score overlapping windows, keep the highest).")
    p.add_argument("--json", action="store_true", help="Print one JSON object per decision.")
    p.add_argument("--jsonl", default=None, help="Read items from a JSONL file: {id, text | messages, label?}; labels feed the FP-rate metrics.")
    p.add_argument("--quiet", action="store_true", help="Print only the summary line.")
    p.add_argument("--no-review", action="store_true", help="Ask for ALLOW/FLAG only: decisions in the bundle's review band come back as FLAG (what clients that predate REVIEW get).")


def _read_items(ns) -> tuple[list, list[str]]:
    if ns.jsonl:
        items = [json.loads(l) for l in open(ns.jsonl, encoding="utf-8") if l.strip()]
        items = [{k: v for k, v in it.items() if k in ("id", "text", "messages", "label")} for it in items]
        return items, [it.get("text") or json.dumps(it.get("messages")) for it in items]
    texts = ns.texts if ns.texts and ns.texts != ["-"] else [l.rstrip("\n") for l in sys.stdin if l.strip()]
    return texts, texts


def score(ns) -> int:
    items, texts = _read_items(ns)
    if not items:
        print("reftguard score: no prompts given (pass them as arguments or on stdin)", file=sys.stderr)
        return 2
    with _client(ns) as client:
        try:
            decisions = list(client.score_stream(items, threshold=ns.threshold, source=ns.source, truncation=ns.truncation,
                                                 accept_review=not ns.no_review))
        except grpc.RpcError as err:
            print(f"reftguard score: {err.code().name}: {err.details()}", file=sys.stderr)
            return 1
    flagged = review = 0
    for text, d in zip(texts, decisions):
        flagged += d.verdict == pb.FLAG
        review += d.verdict == pb.REVIEW
        if ns.quiet:
            continue
        if ns.json:
            print(json.dumps({"id": d.id, "verdict": pb.Verdict.Name(d.verdict), "score": round(d.score, 6), "threshold": round(d.threshold, 6),
                              "truncated": d.truncated, "num_tokens": d.num_tokens, "turn": d.turn, "window": d.window,
                              "num_windows": d.num_windows, "role": d.role, "reason": d.reason, "category": d.category, "text": text}))
        else:
            preview = text if len(text) <= 70 else text[:67] + "..."
            why = f"  [{d.reason}, {d.role} turn {d.turn}]" if d.reason and d.turn >= 0 else ""
            why += f"  [{d.category} {d.category_probability:.2f}]" if d.category else ""
            print(f"{pb.Verdict.Name(d.verdict):6}  score {d.score:+.4f}  (threshold {d.threshold:+.4f})  {preview}{why}")
    if not ns.json:
        print(f"{flagged}/{len(decisions)} flagged" + (f", {review} for review" if review else ""))
    return 0


def health_args(p: argparse.ArgumentParser) -> None:
    target_args(p)
    p.add_argument("--service", default="", help="Service name to check ('' = the whole server).")


def health(ns) -> int:
    """Exit 0 iff the server reports SERVING (used by the container HEALTHCHECK)."""
    with _client(ns) as client:
        try:
            ok = client.health(ns.service)
        except grpc.RpcError as err:
            print(f"unhealthy: {err.code().name}: {err.details()}", file=sys.stderr)
            return 1
    print("SERVING" if ok else "NOT_SERVING")
    return 0 if ok else 1


def info_args(p: argparse.ArgumentParser) -> None:
    target_args(p)


def info(ns) -> int:
    with _client(ns) as client:
        r = client.info()
    print(json.dumps({"bundle_id": r.bundle_id, "threshold": r.threshold, "expected_fpr": r.expected_fpr, "version": r.version,
                      "provider": r.provider, "layer": r.layer, "backbone": r.backbone, "sources": list(r.sources),
                      "limits": {f.name: getattr(r.limits, f.name) for f in r.limits.DESCRIPTOR.fields}}, indent=2))
    return 0
