"""`reftguard review DIR`: a human walks the flagged items of a scan, keeps or releases each one.

`session` holds the state and the side effects (reviewed.jsonl, Feedback RPCs, --apply); `app` is the
textual UI over a session; `cli` is the command.
"""
