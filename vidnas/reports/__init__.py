"""Reports: one self-contained HTML file per campaign, built from tidy tables and matplotlib figures."""

from vidnas.reports._data import RunData, accuracy_frame, load_run, slot_frame
from vidnas.reports._report import render, write_report

__all__ = ["RunData", "accuracy_frame", "load_run", "render", "slot_frame", "write_report"]
