"""Results from finished run folders: ``depdet compare`` (paired tests) and ``depdet report`` (a page
for a supplement). Both recompute every statistic from the runs' per-clip predictions."""

from depdet.pipeline.reports.compare import compare_runs
from depdet.pipeline.reports.run_report import write_run_report
from depdet.pipeline.reports.runs import RunData, load_run, pair_check

__all__ = ["RunData", "compare_runs", "load_run", "pair_check", "write_run_report"]
