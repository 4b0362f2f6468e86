"""`reftguard scan`: split a dataset into allowed / flagged / errors, exactly once and resumably.

    from reftguard.clients.scan import ScanConfig, run_scan
    report = run_scan(ScanConfig(input="data.jsonl", out="scan-out", target="guard:50051"))

Module map (one job each): `rows` (the row and output column contract), `records` (record shapes ->
scorable items), `digest` (content hashes for the exactly-once check), `formats` + `jsonl`/`csvio`/
`arrowio` (readers and chunked writers per file format), `engines` (remote and in-process scoring),
`checkpoint` (atomic resume state), `runner` (the scan loop), `report` + `html` (report.json/html),
`progress` (rich progress bar), `cli` (the command).
"""
from reftguard.clients.scan.runner import ScanConfig, run_scan

__all__ = ["ScanConfig", "run_scan"]
