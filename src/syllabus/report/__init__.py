"""The ablation report: evaluation table with uncertainty, plots, samples and manifest."""

from syllabus.report.data import ReportData
from syllabus.report.evaluation import ArmRow, Evaluation, TaskTable, compute_results
from syllabus.report.render import write_report
from syllabus.report.stats import arm_mean, difference_ci, seed_sd

__all__ = [
    "ArmRow",
    "Evaluation",
    "ReportData",
    "TaskTable",
    "arm_mean",
    "compute_results",
    "difference_ci",
    "seed_sd",
    "write_report",
]
