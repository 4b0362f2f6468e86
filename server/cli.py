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
    import logging
    import sys

    from reftguard.server.app import serve as run

    if not ns.verbose:
        logging.getLogger("reftguard").setLevel(logging.INFO)
    for warning in secrets_on_command_line(sys.argv[1:]):
        logging.getLogger("reftguard.server").warning(warning)
    return asyncio.run(run(from_args(ServerConfig, ns)))
