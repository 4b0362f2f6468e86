"""Do role features fitted on int8's own states win back the reply ranking int8 loses with the fp32 fit?

The default bundle plus its int8 graph (`reftguard export --int8`) reads replies with features fitted on fp32
states: roles-dev AUROC 0.938 -> 0.907 (assistant), so auto never serves int8 for whole records. Here the
same features (roles-train rows, midpoint centre) are fitted on the int8 graph's own states and roles-dev is
scored with them. The numbers were first seen through a product prototype (fit-roles and `export --int8`
fitting per precision), reverted once they came in. Rule: fit per precision in the product iff it brings every
role's int8 AUROC within 0.002 of fp32 (what auto's int8_pays asks).

    OMP_NUM_THREADS=2 python -m research.int8_roles BUNDLE_WITH_INT8 [--out research/results/int8_roles.json]
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

from reftguard import evaluation
from reftguard.bundle import GuardBundle
from reftguard.data import load_labeled, packaged
from reftguard.features import cosine_scores, refusal_feature
from reftguard.role_fit import turn_states


def int8_states(bundle: GuardBundle, texts: list[str]) -> np.ndarray:
    from reftguard.engines.openvino import OpenVinoEngine

    return turn_states(bundle, texts, engine=OpenVinoEngine(bundle, precision="int8"))


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("bundle")
    ap.add_argument("--out", default="research/results/int8_roles.json")
    args = ap.parse_args(argv)
    b = GuardBundle.load(args.bundle)
    train, dev = load_labeled(packaged("roles-train.jsonl")), load_labeled(packaged("roles-dev.jsonl"))
    fp32_fit = b.role_features()
    result: dict = {"bundle_id": b.bundle_id, "rule": __doc__.split("Rule: ")[1].split("\n\n")[0]}
    for role in fp32_fit:
        tr = [p for p in train if p.role == role]
        dv = [p for p in dev if p.role == role]
        y_tr, y_dv = np.array([p.label for p in tr]), np.array([p.label for p in dv])
        h8_tr, h8_dv = int8_states(b, [p.text for p in tr]), int8_states(b, [p.text for p in dv])
        h32_dv = turn_states(b, [p.text for p in dv])
        own = refusal_feature(h8_tr, y_tr, "midpoint")
        result[role] = {"fp32 states, fp32 fit": evaluation.auroc(cosine_scores(h32_dv, *fp32_fit[role]), y_dv),
                        "int8 states, fp32 fit": evaluation.auroc(cosine_scores(h8_dv, *fp32_fit[role]), y_dv),
                        "int8 states, int8 fit": evaluation.auroc(cosine_scores(h8_dv, *own), y_dv)}
    result["adopt"] = all(v["fp32 states, fp32 fit"] - v["int8 states, int8 fit"] <= 0.002 for k, v in result.items() if isinstance(v, dict))
    Path(args.out).write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
