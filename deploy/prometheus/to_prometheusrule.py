"""Print the reftguard rules as one Prometheus Operator PrometheusRule (stdout), for `kubectl apply -f -`."""
import glob
from pathlib import Path

import yaml

rules = sorted(glob.glob(str(Path(__file__).parent / "rules" / "*.yml")))
groups = [g for f in rules for g in yaml.safe_load(open(f))["groups"]]
print(yaml.safe_dump({"apiVersion": "monitoring.coreos.com/v1", "kind": "PrometheusRule",
                      "metadata": {"name": "reftguard", "labels": {"app.kubernetes.io/name": "reftguard"}},
                      "spec": {"groups": groups}}))
