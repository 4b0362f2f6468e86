"""CARD.md: the human-readable card of a guard bundle, rendered from its manifest (deterministic: no clock)."""
from __future__ import annotations


def review_bands_of(entry: dict) -> dict[str, dict]:
    """{role: review band record} of one calibration entry (or manifest): its `review` for user turns, then
    each role's own, in role order."""
    bands = [("user", entry.get("review"))] + [(r, v.get("review")) for r, v in sorted((entry.get("roles") or {}).items())]
    return {role: band for role, band in bands if band}


def _fmt(v) -> str:
    if v is None:
        return "n/a"
    if isinstance(v, float):
        return f"{v:.4f}"
    return str(v)


def render_card(m: dict) -> str:
    src = m.get("source_model", {})
    cal = m.get("calibration") or {}
    at = cal.get("at_threshold") or {}
    teacher = m.get("teacher", {})
    exp = m.get("exporter", {})
    lines = [
        "# reftguard guard bundle",
        "",
        "Flags prompts whose layer-l last-token state points along the refusal feature R_l:",
        f"`score = cos(h_{m['layer']} - c, R_{m['layer']})`, flagged when `score > threshold`.",
        "",
        "## Where it came from",
        f"- backbone: `{src.get('name')}` ({src.get('architecture')}, weights sha256 `{str(src.get('weights_sha256', ''))[:16]}…`)",
        f"- teacher: {teacher.get('kind', 'n/a')}; layer {m['layer']} of {m.get('num_layers_total')}, hidden size {m['hidden_size']}, centre `{m.get('score', {}).get('center')}`",
        *_reproduce(teacher.get("record", {})),
        f"- prompt format: the model's chat template around one user turn ({m['prompt_format'].get('source')}); max {m['max_tokens']} tokens, default truncation `{m.get('truncation')}`",
        f"- export: opset {exp.get('opset')}, {exp.get('dtype')}, parity max |Δscore| vs PyTorch {_fmt(exp.get('parity_max_abs_diff'))}, batch-invariance max |Δ| {_fmt(exp.get('batch_invariance_max_abs_diff'))}",
        *[f"- {role} turns are read with their own refusal feature, fitted on {f['n_harmful']} harmful and {f['n_benign']} benign {role} turns "
          f"({', '.join(m['role_features'].get('data', []))}; {f.get('method', 'mean difference')}; cosine with R_l {_fmt(f['cos_with_r_l'])})"
          for role, f in (m.get("role_features") or {}).get("fit", {}).items()],
        "",
        "## Threshold",
        f"- threshold: **{_fmt(m['threshold'])}**, chosen by: {cal.get('method', 'n/a')} (target {cal.get('target', 'n/a')})",
        f"- calibration data: {cal.get('data', 'n/a')} (split `{cal.get('split', 'all')}`, hash `{cal.get('data_hash', 'n/a')}`, n={cal.get('n', 'n/a')}); set by `{cal.get('set_by', 'the target')}`",
        *[f"- {role} turns: threshold **{_fmt(r['threshold'])}** ({r['calibration'].get('method', 'n/a')} {r['calibration'].get('target', '')}, "
          f"n={r['calibration'].get('n', 'n/a')})" for role, r in sorted((m.get("roles") or {}).items())],
        *(["- whole records: only user turns are scored (no assistant or system calibration)"] if not m.get("roles") else []),
        *[f"- review band, {role} turns: {_fmt(band['threshold'])} < score <= the flag threshold (recall {_fmt(band['recall'])} of FLAG or REVIEW, "
          f"benign sent to review {_fmt(band['benign_review_share'])})"
          for role, band in review_bands_of(m).items()],
        *([f"- harm categories: {', '.join(m['categories']['labels'])} (head on `{m['categories'].get('input', 'state')}`, fitted on {sum(m['categories']['n'].values())} harmful training rows"
           f"{', ' + str(m['categories']['hand_labels']['rows']) + ' classes read by hand' if m['categories'].get('hand_labels') else ''})"]
          if m.get("categories") else []),
        *([f"- flag gate: a request over its flag threshold is FLAGged only if its `{m['flag_gate']['input']}` reading is over "
           f"{_fmt(m['flag_gate']['threshold'])} (keeps {_fmt(m['flag_gate']['kept'])} of {m['flag_gate']['n_flagged_harmful']} FLAGged "
           f"harmful calibration prompts); otherwise REVIEW"] if m.get("flag_gate") else []),
        *([f"- review edge of the gate: a request in the band is REVIEWed only if that reading is over {_fmt(m['flag_gate']['review_threshold'])} "
           f"(keeps {_fmt(m['flag_gate']['review_keep'])} of the harmful calibration prompts); otherwise ALLOW"]
          if (m.get("flag_gate") or {}).get("review_keep") else []),
        "",
        "In-sample figures (on the calibration data itself; see docs/results.md for held-out ones):",
        "",
        "| metric | value |",
        "|---|---|",
    ]
    for key in ("auroc", "recall_at_1pct_fpr", "recall_at_5pct_fpr", "recall", "fpr", "precision", "f1"):
        lines.append(f"| {key} | {_fmt(at.get(key))} |")
    precisions = m.get("precisions") or {}
    if precisions:
        lines += [
            "",
            "## Per precision",
            "",
            "Each precision is served at its own threshold, calibrated on its own engine's scores.",
            "",
            "| precision | engine | threshold | recall | FPR | max \\|Δ\\| vs fp32 | verdict flips | batch invariance |",
            "|---|---|---|---|---|---|---|---|",
        ]
        for p, e in sorted(precisions.items()):
            a = (e.get("calibration") or {}).get("at_threshold") or {}
            par, inv = e.get("parity_vs_fp32") or {}, e.get("batch_invariance") or {}
            lines.append(f"| {p} | {e.get('engine', 'n/a')} | {_fmt(e.get('threshold'))} | {_fmt(a.get('recall'))} | {_fmt(a.get('fpr'))} | "
                         f"{par.get('max_abs_diff', float('nan')):.1e} | {par.get('verdict_flips', 'n/a')} | {inv.get('max_abs_diff', float('nan')):.1e} |")
    if m.get("fp16"):
        lines += ["", f"fp16 graph (`{m['fp16']['file']}`): {m['fp16']['body']} body, {m['fp16']['head']} head; "
                  f"parity vs fp32 {m['fp16']['parity_max_abs_diff']:.1e} ({m['fp16']['checked_on']})."]
    if m.get("int8"):
        q, sp = m["int8"], m["int8"]["speed"]
        lines += ["", f"int8 graph (`{q['file']}`, {q['quantizer']}, SmoothQuant {q['smooth_quant_alpha']}, {q['head']} head): guard-dev AUROC "
                  f"{_fmt(q['auroc']['int8'])} vs fp32 {_fmt(q['auroc']['fp32'])}; {sp['int8_speedup']:.2f}x {sp['baseline']} on {sp['cpu_model'] or 'an unnamed CPU'}."]
    lines += [
        "",
        "## Known limits",
        "- The score measures closeness to a refusal direction of one backbone; it is not a policy classifier and its",
        "  false-positive rate on your traffic can differ from the calibration set. Watch `reftguard_false_positive_rate`.",
        "- A zero-training (difference-of-means) feature partly tracks writing style; a trained ReFT teacher separates better.",
        "- A prompt beyond max_tokens is scored as overlapping windows plus a short tail window of its last tokens",
        "  (the highest window counts) up to the server's",
        "  max_windows; the `left`/`right` policies truncate instead, and `error` rejects.",
        "",
    ]
    return "\n".join(lines)


def _reproduce(record: dict) -> list[str]:
    """The card's reproducing command(s): a stage-2 teacher needs its stage-1 run first, a soup its members."""
    if not record.get("command"):
        return []
    stage1 = record.get("stage1")
    lines = [f"- train soup member {i + 1}: `{m['command']}`" for i, m in enumerate((stage1 or record).get("members", []))]
    soup = ", the soup of the members" if lines else ""
    if stage1:
        return lines + [f"- reproduce the teacher, stage 1 (layers below l, R_l{soup}): `{stage1['command']}`",
                        f"- then stage 2 (layers l.., the replies; `--init-teacher` is stage 1's `--out`): `{record['command']}`"]
    return lines + [f"- reproduce the teacher{soup}: `{record['command']}`"]
