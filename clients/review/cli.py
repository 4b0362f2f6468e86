"""`reftguard review DIR`: the command line over the review session and UI."""
from __future__ import annotations

import argparse
import json

from reftguard.clients.cli import client_config, target_args


def review_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("dir", help="Output folder of a finished `reftguard scan`.")
    p.add_argument("--order", choices=("highest", "lowest"), default="highest",
                   help="Review highest scores first (likely harmful) or lowest first (likely false positives).")
    p.add_argument("--only", choices=("review", "flagged"), default=None,
                   help="Walk only the review band (review.*) or only the flagged items; by default the band first, then the flagged.")
    p.add_argument("--apply", action="store_true", help="After the session, move released items into allowed.* and kept band items into flagged.*.")
    p.add_argument("--no-ui", action="store_true", help="Skip the UI (e.g. only --apply).")
    p.add_argument("--reviewer", default="", help="Reviewer name recorded with each verdict.")
    p.add_argument("--source", default="", help="Source tag sent with each Feedback.")
    target_args(p)
    p.set_defaults(target=None)  # Feedback only goes out when a service is named


def review(ns) -> int:
    from reftguard.clients.review.session import PARTS, ReviewSession, apply_reviews

    client = None
    if ns.target:
        from reftguard.clients.client import GuardClient

        client = GuardClient(client_config(ns))
    try:
        if not ns.no_ui:
            from reftguard.clients.review.app import ReviewApp

            session = ReviewSession(ns.dir, order=ns.order, feedback=client.feedback if client else None, source=ns.source, reviewer=ns.reviewer,
                                    parts=(ns.only,) if ns.only else PARTS)
            ReviewApp(session).run()
    finally:
        if client is not None:
            client.close()
    if ns.apply:
        print(json.dumps(apply_reviews(ns.dir)))
    return 0
