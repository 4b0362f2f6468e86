"""Research: one-off experiments whose decisions are made, kept runnable (`python -m research.NAME` from the
repository root) with their results (research/results/) and the lab notebook (research/NOTEBOOK.md).
Not installed, not in the default test run (`python -m pytest research/tests`)."""
