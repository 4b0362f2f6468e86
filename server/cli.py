"""`reftguard serve`."""
from __future__ import annotations

import argparse
import asyncio

from reftguard.config import add_dataclass_args, from_args
from reftguard.server.config import ServerConfig


def serve_args(p: argparse.ArgumentParser) -> None:
    add_dataclass_args(p, ServerConfig, group="server")


SECRET_FLAGS = (("--auth-token", "REFTGUARD_AUTH_TOKEN", "--auth-token-file"),
                ("--feedback-token", "REFTGUARD_FEEDBACK_TOKEN", "--feedback-token-file"))


def secrets_on_command_line(argv: list[str]) -> list[str]:
    """A warning per token passed as a flag: every user of the machine reads it in `ps` and /proc."""
    return [f"{flag} on the command line is visible to every user of this machine (ps, /proc/*/cmdline); "
            f"pass it in the environment ({env}) or a file ({file_flag}) instead"
            for flag, env, file_flag in SECRET_FLAGS if any(a == flag or a.startswith(flag + "=") for a in argv)]


def serve(ns) -> int:
    """Serve until drained, then exit at once (never returns). Worker threads may still run work that no
    one waits for any more (a batch, or a long request's tokenizing, cut off by the grace period), and
    the interpreter joins them at exit: that took ~9 s after "drained; exiting" and pushed the drain past
    Kubernetes' grace period."""
    import logging
    import os
    import sys

    from reftguard.server.app import serve as run

    if not ns.verbose:
        logging.getLogger("reftguard").setLevel(logging.INFO)
    for warning in secrets_on_command_line(sys.argv[1:]):
        logging.getLogger("reftguard.server").warning(warning)
    code = asyncio.new_event_loop().run_until_complete(run(from_args(ServerConfig, ns)))
    logging.shutdown()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)
