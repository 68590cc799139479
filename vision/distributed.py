"""Data-parallel training for the vision trainers: ``torchrun --nproc_per_node N python -m vision.train_…``.

:func:`init_from_env` joins the process group torchrun describes (``nccl`` on GPUs, ``gloo`` on CPUs); without
torchrun it is one process and nothing here communicates. The trainers then keep one rule: **N processes compute
what one process computes on the same global batch**, so a run's losses, weights and checkpoints do not depend on
the number of processes.

* **Data.** Samples are numbered from the start of training and each one is made from its own number (its seed),
  never from a worker's or a rank's random stream. :class:`ShardSampler` hands each rank its contiguous block of
  every global batch (``--batch`` stays the global batch; each rank loads ``batch / N``).
* **Batch norm.** Statistics over a rank's block are not those of the global batch: every ``BatchNorm2d`` (timm's
  ``BatchNormAct2d`` too) becomes a synchronised one: torch's ``SyncBatchNorm`` on GPUs, :class:`GlobalBatchNorm2d`
  on CPUs (torch's refuses CPU tensors). Parameter and buffer names do not change.
* **Losses.** DDP averages gradients over ranks, which is right for per-sample means. A loss normalised by a count
  taken from the data (positive cells, hole pixels) goes through :meth:`DistContext.ratio`, which divides by the
  count over all ranks, so the ranks' values average to the global one.
* **Time.** Time budgets, time-based learning-rate schedules and log or save intervals read rank 0's clock
  (:meth:`DistContext.agree`): ranks that disagreed would stop at different steps and hang in a collective.
* **Checkpoints.** Every rank holds the full model and optimizer, so rank 0 writes exactly the files one process
  writes, and every rank of any world size reads them.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import torch
import torch.distributed as dist
from torch import nn
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data import Sampler

Ratio = Callable[[torch.Tensor, torch.Tensor, float], torch.Tensor]


class DistributedSetupError(ValueError):
    """A training setting that the number of processes cannot honour."""


def local_ratio(num: torch.Tensor, den: torch.Tensor, min_den: float) -> torch.Tensor:
    """``num / max(den, min_den)``: the one-process form of :meth:`DistContext.ratio`."""
    return num / den.clamp(min=min_den)


@dataclass(frozen=True)
class DistContext:
    """Where this process sits in the job, and the few collectives the trainers need."""

    rank: int
    world_size: int
    local_rank: int
    device: torch.device

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.world_size > 1

    @property
    def memory_format(self) -> torch.memory_format:
        """Channels-last on GPUs (faster convolutions); the default layout on CPUs, whose batch norm over
        channels-last tensors lost precision in our measurements (6e-5 relative error after one layer, up to 5 %
        in some gradients of the detector, torch 2.14)."""
        return torch.channels_last if self.device.type == "cuda" else torch.contiguous_format

    def local_batch(self, global_batch: int) -> int:
        """This rank's share of the global batch.

        Raises:
            DistributedSetupError: the batch does not split evenly over the processes.
        """
        if global_batch < 1 or global_batch % self.world_size:
            raise DistributedSetupError(f"batch {global_batch} cannot be split evenly over {self.world_size} processes")
        return global_batch // self.world_size

    def wrap(self, module: nn.Module) -> nn.Module:
        """``module`` under DDP (gradients averaged over ranks) when distributed, else ``module`` itself."""
        if not self.distributed:
            return module
        ids = [self.device.index] if self.device.type == "cuda" else None
        return DistributedDataParallel(module, device_ids=ids)

    def sync_batchnorm(self, module: nn.Module) -> nn.Module:
        """Make every batch norm in ``module`` use global-batch statistics when distributed (names unchanged)."""
        if not self.distributed:
            return module
        if self.device.type == "cuda":
            from timm.layers import convert_sync_batchnorm

            return convert_sync_batchnorm(module)  # torch's SyncBatchNorm, timm's norm+act variant included
        return _to_global_batchnorm(module)

    def ratio(self, num: torch.Tensor, den: torch.Tensor, min_den: float) -> torch.Tensor:
        """This rank's value of ``sum(num) / max(sum(den), min_den)`` over ranks, scaled so that the ranks' values
        average to it (DDP averages their gradients). Every rank must call it; ``den`` carries no gradient."""
        if not self.distributed:
            return local_ratio(num, den, min_den)
        total = den.detach().to(torch.float32).clone()
        dist.all_reduce(total)
        return num * self.world_size / total.clamp(min=min_den)

    def mean(self, values: torch.Tensor) -> torch.Tensor:
        """The mean over ranks of a detached tensor (the global value of per-rank losses, for logging)."""
        values = values.detach().to(torch.float32).clone()
        if self.distributed:
            dist.all_reduce(values)
            values /= self.world_size
        return values

    def agree(self, value: float) -> float:
        """Rank 0's ``value`` on every rank (a clock reading, so that all ranks take the same decisions)."""
        if not self.distributed:
            return value
        t = torch.tensor([value], dtype=torch.float64, device=self.device)
        dist.broadcast(t, src=0)
        return float(t.item())

    def barrier(self) -> None:
        if self.distributed:
            dist.barrier()


def init_from_env(cpu: bool = False, timeout_s: float = 600) -> DistContext:
    """Join the process group torchrun describes (``RANK``, ``WORLD_SIZE``, ``LOCAL_RANK``, ``MASTER_ADDR/PORT``).

    Without those variables this is one process (rank 0 of 1) and no group is created. An existing group is reused.

    Args:
        cpu: train on CPUs (``gloo``) even when GPUs are present.
        timeout_s: how long a collective may wait for the other ranks.
    """
    world = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    cuda = torch.cuda.is_available() and not cpu
    device = torch.device("cuda", local_rank) if cuda else torch.device("cpu")
    if cuda:
        torch.cuda.set_device(device)
    if world > 1 and not dist.is_initialized():
        dist.init_process_group("nccl" if cuda else "gloo", timeout=timedelta(seconds=timeout_s))
    return DistContext(rank, world, local_rank, device)


def default_workers(minimum: int) -> int:
    """DataLoader workers per process: this machine's cores shared by the processes torchrun starts on it, less
    one for the training loop itself (at least `minimum`)."""
    per_process = (os.cpu_count() or 2) // max(1, int(os.environ.get("LOCAL_WORLD_SIZE", "1")))
    return max(minimum, per_process - 1)


@contextmanager
def process_group(cpu: bool = False) -> Iterator[DistContext]:
    """:func:`init_from_env` for a command line run: leaves the group at the end if it joined it."""
    joined = not dist.is_initialized()
    ctx = init_from_env(cpu)
    try:
        yield ctx
    finally:
        if joined and dist.is_initialized():
            dist.barrier()  # no rank leaves the group while a peer still uses it (gloo aborts the process otherwise)
            dist.destroy_process_group()


class ShardSampler(Sampler[int]):
    """Sample numbers of consecutive global batches; this rank's contiguous block of each.

    Global batch ``s`` is samples ``start + s * B`` to ``start + (s + 1) * B - 1``; rank ``r`` of ``N`` takes the
    ``r``-th block of ``B / N`` of them. With ``batch_size = B / N`` every rank's loader yields its rows of the
    batch that one process would draw, so the global batch does not depend on the number of processes.

    Args:
        global_batch: samples per global batch (a multiple of ``world_size``).
        rank: this process's rank.
        world_size: number of processes.
        start: the first sample (``step * global_batch`` to resume after ``step`` steps).
        stop: no sample at or after this one (only whole global batches); None for an endless stream.
    """

    def __init__(self, global_batch: int, rank: int, world_size: int, start: int = 0, stop: int | None = None) -> None:
        if global_batch % world_size:
            raise DistributedSetupError(f"batch {global_batch} cannot be split evenly over {world_size} processes")
        self.global_batch, self.rank, self.world_size = global_batch, rank, world_size
        self.start, self.stop = start, stop

    def __iter__(self) -> Iterator[int]:
        block = self.global_batch // self.world_size
        first = self.start
        while self.stop is None or first + self.global_batch <= self.stop:
            yield from range(first + self.rank * block, first + (self.rank + 1) * block)
            first += self.global_batch

    def __len__(self) -> int:
        if self.stop is None:
            raise TypeError("an endless ShardSampler has no length")
        batches = max(0, (self.stop - self.start) // self.global_batch)
        return batches * (self.global_batch // self.world_size)


# ---------------------------------------------------------------------- batch norm over all ranks (CPU)
class _AllSum(torch.autograd.Function):
    """Sum over ranks; the gradient of every rank's input is the sum of the ranks' output gradients."""

    @staticmethod
    def forward(ctx: Any, x: torch.Tensor) -> torch.Tensor:
        out = x.clone(memory_format=torch.contiguous_format)
        dist.all_reduce(out)
        return out

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> torch.Tensor:
        grad = grad.clone(memory_format=torch.contiguous_format)
        dist.all_reduce(grad)
        return grad


class GlobalBatchNorm2d(nn.BatchNorm2d):
    """``BatchNorm2d`` that, in training under a process group, normalises with the global batch's statistics.

    The mean and the (biased) variance come from sums over every rank's block, computed in fp32 in two passes
    and differentiated through the exchange; the running statistics get the unbiased variance, as in one process.
    Every rank must run the same layers in the same order. Outside training, or in one process, it is
    ``BatchNorm2d``.
    """

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not (self.training and dist.is_initialized() and dist.get_world_size() > 1):
            return super().forward(x)
        c = x.shape[1]
        xf = x.float()
        dims = (0, 2, 3)
        local_count = xf.new_tensor([xf.numel() // c])
        sums = _AllSum.apply(torch.cat([xf.sum(dims), local_count]))
        count = sums[c]
        mean = sums[:c] / count
        centred = xf - mean[None, :, None, None]
        var = _AllSum.apply(centred.square().sum(dims)) / count
        y = centred * torch.rsqrt(var + self.eps)[None, :, None, None]
        if self.affine:
            y = y * self.weight[None, :, None, None] + self.bias[None, :, None, None]
        if self.track_running_stats:
            self._update_running_stats(mean.detach(), var.detach() * count / (count - 1).clamp(min=1))
        return y.to(x.dtype)

    @torch.no_grad()
    def _update_running_stats(self, mean: torch.Tensor, unbiased_var: torch.Tensor) -> None:
        self.num_batches_tracked.add_(1)
        factor = 1.0 / float(self.num_batches_tracked) if self.momentum is None else self.momentum
        self.running_mean.lerp_(mean.to(self.running_mean.dtype), factor)
        self.running_var.lerp_(unbiased_var.to(self.running_var.dtype), factor)


class GlobalBatchNormAct2d(GlobalBatchNorm2d):
    """:class:`GlobalBatchNorm2d` followed by the ``drop`` and ``act`` children of timm's ``BatchNormAct2d``."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.act(self.drop(super().forward(x)))


def _to_global_batchnorm(module: nn.Module) -> nn.Module:
    """Replace every ``BatchNorm2d`` / ``BatchNormAct2d`` below ``module``, sharing its parameters and buffers."""
    from timm.layers import BatchNormAct2d

    out = module
    if isinstance(module, nn.modules.batchnorm._BatchNorm):
        if type(module) not in (nn.BatchNorm2d, BatchNormAct2d):
            raise DistributedSetupError(f"cannot synchronise {type(module).__name__} over processes")
        cls = GlobalBatchNormAct2d if isinstance(module, BatchNormAct2d) else GlobalBatchNorm2d
        out = cls(module.num_features, module.eps, module.momentum, module.affine, module.track_running_stats)
        if module.affine:
            out.weight, out.bias = module.weight, module.bias
        if module.track_running_stats:
            out.running_mean, out.running_var = module.running_mean, module.running_var
            out.num_batches_tracked = module.num_batches_tracked
        out.train(module.training)
    for name, child in module.named_children():  # BatchNormAct2d's act and drop come along here
        out.add_module(name, _to_global_batchnorm(child))
    return out
