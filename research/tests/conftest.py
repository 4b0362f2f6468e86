"""The main suite's fixtures (tiny models and bundles) for the research tests: `python -m pytest research/tests`."""
from tests.conftest import *  # noqa: F401,F403
