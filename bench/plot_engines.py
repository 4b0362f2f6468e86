"""Plot the engines run of bench/serve_vs_ort.py: prompts/s per engine/precision, bare and behind the server.

    python -m bench.plot_engines [--json bench/results/serve_vs_ort_engines.json] [--out bench/results/serve_vs_ort_engines.png]

Grouped bars per engine label: the bare engine at its best batch, the server's stream rate with 1 / 4 / 16
clients and its unary rate with 16 clients. Reads only the JSON (no measurement here).
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
SERIES = (  # (legend, how to read it from the JSON for one engine label)
    ("bare (best batch)", lambda r, k: r["engines"].get(k)),
    ("stream x1", lambda r, k: r["server_by_engine"].get(k, {}).get("stream_by_clients", {}).get("1")),
    ("stream x4", lambda r, k: r["server_by_engine"].get(k, {}).get("stream_by_clients", {}).get("4")),
    ("stream x16", lambda r, k: r["server_by_engine"].get(k, {}).get("stream_by_clients", {}).get("16")),
    ("unary x16", lambda r, k: r["server_by_engine"].get(k, {}).get("unary_by_clients", {}).get("16")),
)


def plot(r: dict, out: Path) -> None:
    labels = list(r["engines"])
    width = 0.8 / len(SERIES)
    fig, ax = plt.subplots(figsize=(8, 4), dpi=100)
    for i, (name, get) in enumerate(SERIES):
        xs = [j + (i - (len(SERIES) - 1) / 2) * width for j in range(len(labels))]
        ys = [get(r, k) or 0.0 for k in labels]  # 0: not measured (a --quick run serves the fastest engine only)
        bars = ax.bar(xs, ys, width, label=name)
        ax.bar_label(bars, fmt="%.1f", fontsize=7, padding=1)
    ax.set_xticks(range(len(labels)), labels)
    ax.set_ylabel("prompts/s")
    load = "/".join(f"{x:.1f}" for x in r["load_avg_start"])
    ax.set_title(f"{r['bundle_id']}, {r['n_prompts']} prompts, {r['cpus']} CPUs, load avg {load} at start", fontsize=9)
    ax.legend(fontsize=8, ncols=len(SERIES), loc="upper center", bbox_to_anchor=(0.5, -0.1), frameon=False)
    ax.spines[["top", "right"]].set_visible(False)
    fig.tight_layout()
    fig.savefig(out)
    plt.close(fig)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--json", default=str(ROOT / "bench/results/serve_vs_ort_engines.json"), help="Results of bench/serve_vs_ort.py.")
    ap.add_argument("--out", default=str(ROOT / "bench/results/serve_vs_ort_engines.png"), help="PNG to write.")
    args = ap.parse_args()
    plot(json.loads(Path(args.json).read_text()), Path(args.out))
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
