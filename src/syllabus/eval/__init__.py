"""Evaluation: HumanEval pass@k in the sandbox (more tasks to come)."""
