"""The command line every research script shares: where results go, where states are cached, which bundle."""
from __future__ import annotations

import argparse


def parser(doc: str, out: str, cache: str, bundle: bool = True) -> argparse.ArgumentParser:
    """--out and --cache, and --bundle for scripts that read states from a bundle's graph (not the teacher's)."""
    ap = argparse.ArgumentParser(description=doc, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", default=out, help="results JSON")
    ap.add_argument("--cache", default=cache, help="folder for cached states (runs/ is not in git)")
    if bundle:
        ap.add_argument("--bundle", default="", help="bundle whose graph gives the states (default: the default bundle, built if missing)")
    return ap


def bundle_of(args):
    """The bundle `--bundle` names, else the default bundle (built if missing: needs reftguard[train])."""
    from reftguard.bundle import GuardBundle
    from reftguard.exporter.default_bundle import ensure_default_bundle

    return GuardBundle.load(args.bundle) if args.bundle else ensure_default_bundle()
