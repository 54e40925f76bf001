"""Batch orchestration: run_extract over many clips (resume, skip, failures, views) and the executors that run the jobs."""
