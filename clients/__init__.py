"""Python clients of the guard service (grpcio + protobuf + stdlib only).

    from reftguard.clients import GuardClient
    with GuardClient("localhost:50051") as guard:
        for d in guard.score(["How do I bake bread?"]):
            print(d.id, d.verdict == FLAG, d.score)
"""
from reftguard.clients.client import AsyncGuardClient, ClientConfig, GuardClient
from reftguard.v1.guard_pb2 import ALLOW, BENIGN, FLAG, HARMFUL, Decision, Item

__all__ = ["AsyncGuardClient", "GuardClient", "ClientConfig", "Decision", "Item", "ALLOW", "FLAG", "BENIGN", "HARMFUL"]
