"""Reports: one self-contained HTML file per campaign, and per study of the seeds' design rules on a target
(``run_study``, ``write_study``), built from tidy tables and matplotlib figures."""

from vidnas.reports._data import RunData, accuracy_frame, load_run, slot_frame
from vidnas.reports._report import render, write_report
from vidnas.reports._study import StudyOptions, run_study
from vidnas.reports._study_report import render_study, study_json, write_study
from vidnas.reports._study_sources import (
    BackendSource,
    RooflineSource,
    TableSource,
    check_table_space,
    fallback_roofline,
)

__all__ = ["BackendSource", "RooflineSource", "RunData", "StudyOptions", "TableSource", "accuracy_frame",
           "check_table_space", "fallback_roofline", "load_run", "render", "render_study", "run_study", "slot_frame",
           "study_json", "write_report", "write_study"]
