"""Executors: run `fn(rank, world_size)` for every rank, here (processes) or on Ray.

Tasks find their share of the input from their rank alone and write their results to disk, so
both executors run exactly the same code and give the same output for the same input. A
pipeline with barriers runs as step groups: every rank of one group, then the barrier once,
then the next group (`run_groups`).
"""

from __future__ import annotations

import functools
import multiprocessing
import os
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor
from typing import Any

from syllabus.curate.config import ExecutorConfig
from syllabus.errors import UserError
from syllabus.extras import require


def world_size(config: ExecutorConfig) -> int:
    return config.workers or os.cpu_count() or 1


def run_local(fn: Callable[[int, int], Any], world: int, processes: int) -> list[Any]:
    if processes <= 1 or world == 1:
        return [fn(rank, world) for rank in range(world)]
    # spawn, not fork: native libraries' thread pools (rensa, BLAS) do not survive a fork.
    context = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(max_workers=min(processes, world), mp_context=context) as pool:
        futures = [pool.submit(fn, rank, world) for rank in range(world)]
        return [future.result() for future in futures]


def run_ray(fn: Callable[[int, int], Any], world: int, address: str | None) -> list[Any]:
    ray = require("ray", "ray")  # executor kind = ray
    if not ray.is_initialized():
        try:
            ray.init(address=address, include_dashboard=False, log_to_driver=False)
        except (ConnectionError, RuntimeError, ValueError) as exc:
            raise UserError(f"cannot start or reach Ray ({address or 'local'}): {exc}") from None
    remote = ray.remote(num_cpus=1)(_call)
    return ray.get([remote.remote(fn, rank, world) for rank in range(world)])


def _call(fn: Callable[[int, int], Any], rank: int, world: int) -> Any:
    return fn(rank, world)


def run_tasks(fn: Callable[[int, int], Any], config: ExecutorConfig) -> list[Any]:
    world = world_size(config)
    if config.kind == "ray":
        return run_ray(fn, world, config.ray_address)
    return run_local(fn, world, world)


def run_groups(
    fn: Callable[..., Any],
    groups: int,
    barrier: Callable[[int], None],
    config: ExecutorConfig,
) -> list[list[Any]]:
    """`fn(rank, world_size, group)` for every rank of group 0, then `barrier(0)` here, then
    group 1, and so on; the tasks' results by group."""
    results = []
    for group in range(groups):
        results.append(run_tasks(functools.partial(_in_group, fn, group), config))
        barrier(group)
    return results


def _in_group(fn: Callable[..., Any], group: int, rank: int, world: int) -> Any:
    return fn(rank, world, group)
