"""Verdicts: a check's result held to its committed baseline (``baseline``, ``verdict``), and the report written
from the verdicts (``report``)."""
