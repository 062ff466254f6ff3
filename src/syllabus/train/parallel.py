"""Data parallelism, applied from outside the model (torchrun sets the environment).

`syllabus train` under `torchrun --nproc_per_node N` trains with DDP (gloo on CPU, NCCL on
CUDA); `fsdp = True` shards parameters with FSDP2 for models that do not fit one device. A
sharded model's state is gathered from every rank into full tensors before rank 0 saves it, so a
checkpoint is the same file whichever way it was trained (tested with 2 CPU processes on gloo).
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch
import torch.distributed as dist


@dataclass
class World:
    rank: int = 0
    size: int = 1
    local_rank: int = 0
    device: torch.device = torch.device("cpu")

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.size > 1


def init_world() -> World:
    if "RANK" not in os.environ:
        device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
        return World(device=device)
    rank, size, local = (
        int(os.environ["RANK"]),
        int(os.environ["WORLD_SIZE"]),
        int(os.environ.get("LOCAL_RANK", 0)),
    )
    if torch.cuda.is_available():
        torch.cuda.set_device(local)
        device = torch.device("cuda", local)
        dist.init_process_group("nccl")
    else:
        device = torch.device("cpu")
        dist.init_process_group("gloo")
    return World(rank=rank, size=size, local_rank=local, device=device)


def parallelize(model: torch.nn.Module, world: World, *, fsdp: bool = False) -> torch.nn.Module:
    """Wrap a single-device model for the world it runs in."""
    if not world.distributed:
        return model
    if fsdp:
        from torch.distributed.fsdp import fully_shard

        for layer in model.layers:
            fully_shard(layer)
        fully_shard(model)
        return model
    from torch.nn.parallel import DistributedDataParallel

    return DistributedDataParallel(
        model, device_ids=[world.local_rank] if world.device.type == "cuda" else None
    )


def full_state(model: torch.nn.Module, optimizer, sharded: bool) -> tuple[dict, dict]:
    """Model and optimizer state dicts of full tensors; under FSDP every rank must call this
    (the shards are gathered) and only rank 0 gets them, on the CPU."""
    if not sharded:
        return model.state_dict(), optimizer.state_dict()
    from torch.distributed.checkpoint.state_dict import (
        StateDictOptions,
        get_model_state_dict,
        get_optimizer_state_dict,
    )

    options = StateDictOptions(full_state_dict=True, cpu_offload=True)
    return (
        get_model_state_dict(model, options=options),
        get_optimizer_state_dict(model, optimizer, options=options),
    )


def load_optimizer_state(model: torch.nn.Module, optimizer, saved: dict, sharded: bool) -> None:
    """Load a full optimizer state dict (as `full_state` gives) into a plain or sharded model's optimizer."""
    if not sharded:
        optimizer.load_state_dict(saved)
        return
    from torch.distributed.checkpoint.state_dict import (
        StateDictOptions,
        set_optimizer_state_dict,
    )

    set_optimizer_state_dict(
        model, optimizer, saved, options=StateDictOptions(full_state_dict=True)
    )


def all_reduce_mean(value: torch.Tensor, world: World) -> torch.Tensor:
    if world.distributed:
        dist.all_reduce(value, op=dist.ReduceOp.SUM)
        value = value / world.size
    return value


def barrier(world: World) -> None:
    """Every process waits here for the others (a no-op in one process)."""
    if world.distributed:
        dist.barrier()


def shutdown(world: World) -> None:
    if world.distributed and dist.is_initialized():
        dist.destroy_process_group()
