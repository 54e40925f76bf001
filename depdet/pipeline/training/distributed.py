"""Data-parallel training under ``torchrun``: one process per GPU (or CPU share), one model.

``torchrun --nproc-per-node N -m depdet train ...`` starts N ranks with ``RANK`` / ``WORLD_SIZE`` /
``LOCAL_RANK`` / ``MASTER_ADDR`` in their environment; :func:`from_env` joins them into one process
group (NCCL when the ranks train on CUDA, gloo on CPU). Then, in :class:`~depdet.pipeline.training.runs.Trainer`:

* every rank builds the same model (same seed; rank 0's weights are broadcast as a check) and walks
  the same seeded batch order; each rank takes every N-th item of each global batch (the random
  windows are drawn for the whole batch on every rank, so they match one process);
* each rank's mean loss is weighted by its share of the global batch and the gradients are summed
  across ranks (:meth:`Dist.reduce_gradients`, one all-reduce per step), so every rank takes exactly
  the step one process takes on the global batch (our implementation of data parallelism: a
  gradient all-reduce rather than ``DistributedDataParallel``'s bucketed hooks, so that a rank
  whose share of a short last batch is empty still takes part);
* validation and test logits are computed on a 1/N share per rank and gathered in order
  (:meth:`Dist.gather_logits`) before metrics, calibration (temperature, threshold) and
  checkpoint selection, which every rank then computes identically;
* only rank 0 writes the run folder (config, logs, ``last.pt``, ``best.pt``, ``result.json``,
  ``metrics.json``); resuming reads ``last.pt`` on every rank;
* thread caps: each rank uses ``cores available / local ranks`` torch threads (at least 1; cores
  from the affinity mask and the cgroup quota, :mod:`depdet.threads`) unless ``--threads`` or
  ``OMP_NUM_THREADS`` says otherwise.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch


@dataclass
class Dist:
    """This process's place in a torchrun job."""

    rank: int
    size: int
    local_rank: int
    local_size: int

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    def barrier(self) -> None:
        torch.distributed.barrier()

    def broadcast(self, obj):
        """``obj`` of rank 0 on every rank."""
        box = [obj]
        torch.distributed.broadcast_object_list(box, src=0)
        return box[0]

    def broadcast_parameters(self, model: torch.nn.Module) -> None:
        for t in list(model.parameters()) + list(model.buffers()):
            torch.distributed.broadcast(t.data, src=0)

    def share(self, items: list) -> list:
        """This rank's share of a global batch / index list: every N-th item from position ``rank``."""
        return items[self.rank :: self.size]

    def reduce_gradients(self, model: torch.nn.Module, extra: list[float]) -> list[float]:
        """Sum the gradients (and the floats ``extra``) over the ranks, in one all-reduce."""
        params = [p for p in model.parameters() if p.requires_grad]
        grads: list[torch.Tensor] = []  # each parameter's .grad tensor (a zero one where it had none)
        for p in params:
            if p.grad is None:
                p.grad = torch.zeros_like(p)
            grads.append(p.grad)
        flat = torch.cat(
            [g.reshape(-1) for g in grads] + [torch.tensor(extra, dtype=grads[0].dtype, device=grads[0].device)]
        )
        torch.distributed.all_reduce(flat, op=torch.distributed.ReduceOp.SUM)
        off = 0
        for g in grads:
            n = g.numel()
            g.copy_(flat[off : off + n].view_as(g))
            off += n
        return [float(v) for v in flat[off:].cpu()]

    def gather_logits(self, idx: list[int], fn: Callable[[list[int]], np.ndarray]) -> np.ndarray:
        """``fn(idx)`` computed on a 1/N share of ``idx`` per rank, gathered back in ``idx`` order."""
        mine = self.share(list(range(len(idx))))
        local = np.asarray(fn([idx[k] for k in mine]), dtype=np.float64).reshape(-1) if mine else np.zeros(0)
        parts: list = [None] * self.size
        torch.distributed.all_gather_object(parts, (mine, local))
        out = np.zeros(len(idx), dtype=np.float64)
        for pos, vals in parts:
            out[list(pos)] = vals
        return out


def from_env(device_type: str = "cpu") -> Dist | None:
    """Join the torchrun process group (None when not started by torchrun with more than one rank)."""
    size = int(os.environ.get("WORLD_SIZE", "1") or 1)
    if size <= 1:
        return None
    import torch.distributed as td

    if not td.is_initialized():
        td.init_process_group(backend="nccl" if device_type == "cuda" else "gloo")
    d = Dist(
        td.get_rank(),
        td.get_world_size(),
        int(os.environ.get("LOCAL_RANK", "0") or 0),
        int(os.environ.get("LOCAL_WORLD_SIZE", str(size)) or size),
    )
    from depdet.threads import cap_for_ranks

    cap_for_ranks(d.local_size)  # cores available (affinity, cgroup quota) / local ranks, unless the user chose
    return d
