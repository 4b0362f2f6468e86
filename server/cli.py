"""`reftguard serve`."""
from __future__ import annotations

import argparse
import asyncio

from reftguard.config import add_dataclass_args, from_args
from reftguard.server.config import ServerConfig


def serve_args(p: argparse.ArgumentParser) -> None:
    add_dataclass_args(p, ServerConfig, group="server")


def serve(ns) -> int:
    import logging

    from reftguard.server.app import serve as run

    if not ns.verbose:
        logging.getLogger("reftguard").setLevel(logging.INFO)
    return asyncio.run(run(from_args(ServerConfig, ns)))
