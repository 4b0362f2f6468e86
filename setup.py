"""Build hook: compile proto/reftguard/v1/guard.proto into reftguard/v1/ at build/install time.

Generated code is never committed; grpcio-tools is a build requirement (pyproject.toml), so a plain
`pip install .` or `pip install -e .` always ships stubs that match the .proto in the tree.
"""
from pathlib import Path

from setuptools import setup
from setuptools.command.build_py import build_py

ROOT = Path(__file__).parent


def compile_protos() -> None:
    from grpc_tools import protoc  # build requirement
    import grpc_tools

    proto_root = ROOT / "proto"
    include = Path(grpc_tools.__file__).parent / "_proto"
    for proto in sorted(proto_root.rglob("*.proto")):
        args = [
            "grpc_tools.protoc",
            f"-I{proto_root}",
            f"-I{include}",
            f"--python_out={ROOT}",
            f"--pyi_out={ROOT}",
            f"--grpc_python_out={ROOT}",
            str(proto),
        ]
        if protoc.main(args) != 0:
            raise RuntimeError(f"protoc failed on {proto}")


class BuildPyWithProtos(build_py):
    def run(self):
        compile_protos()
        super().run()


setup(cmdclass={"build_py": BuildPyWithProtos})
