"""The ablation report: evaluation table with uncertainty, plots, samples and manifest."""

from syllabus.report.render import compute_results, write_report
from syllabus.report.stats import arm_mean, difference_ci, seed_sd

__all__ = ["arm_mean", "compute_results", "difference_ci", "seed_sd", "write_report"]
