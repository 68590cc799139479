"""Training on several processes: data parallelism (DDP) and expert parallelism for the MoE layers.

Launch with ``torchrun --nproc_per_node N ...``; :func:`init_from_env` joins the process group that torchrun
describes (``nccl`` on GPUs, ``gloo`` on CPUs). Then:

* **Data parallelism.** Every rank holds the dense weights (attention, norms, embeddings, routers, shared
  experts) and DDP averages their gradients. Each step's global batch (``TrainConfig.batch_size`` rows, the same
  batch a single process would draw) is split into equal row blocks, one per rank, so the gradient, the logged
  losses and the balancing-bias updates are those of one process on the whole batch.
* **Expert parallelism** (:class:`ExpertParallelExperts`). The routed experts of each MoE layer are split into
  equal contiguous blocks, one per rank. After routing, each (token, expert) pair travels to the rank that owns
  the expert (one all-to-all of the rows, sorted by expert), runs through that rank's experts as one grouped
  GEMM, and comes back (a second all-to-all) to be weighted and summed. Gradients flow back through the same
  exchanges; expert gradients are divided by the world size to match DDP's averaging.
* **Checkpoints** are world-size independent: expert shards and their optimizer moments are gathered to rank 0,
  which writes exactly what :meth:`lm.train.Trainer.save_checkpoint` writes for one process (Hugging Face
  layout weights + optimizer + trainer state); loading reads the full tensors and keeps each rank's block, so
  a checkpoint from any number of processes resumes on any other number.
"""

from __future__ import annotations

import inspect
import math
import os
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass, replace
from datetime import timedelta
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import nn
from torch.nn.parallel import DistributedDataParallel

from lm.model import LanguageModel, LMOutput
from lm.moe import Experts, MoE, grouped_mm
from lm.train import TrainConfig, Trainer, TrainError, max_load_ratio

_DDP_OPTIONS = inspect.signature(DistributedDataParallel.__init__).parameters


@dataclass(frozen=True)
class DistContext:
    """Where this process sits in the job."""

    rank: int
    world_size: int
    local_rank: int
    device: torch.device

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def init_from_env(backend: str | None = None, timeout_s: float = 600) -> DistContext:
    """Join the process group torchrun describes (``RANK``, ``WORLD_SIZE``, ``LOCAL_RANK``, ``MASTER_ADDR/PORT``).

    Without those variables this is a single process (rank 0 of 1) and no group is created.

    Args:
        backend: ``nccl`` or ``gloo``; default ``nccl`` when CUDA is available, else ``gloo``.
        timeout_s: how long a collective may wait for the other ranks.
    """
    world = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    cuda = torch.cuda.is_available() and backend != "gloo"
    device = torch.device("cuda", local_rank) if cuda else torch.device("cpu")
    if cuda:
        torch.cuda.set_device(device)
    if world > 1 and not dist.is_initialized():
        dist.init_process_group(backend or ("nccl" if cuda else "gloo"), timeout=timedelta(seconds=timeout_s))
    return DistContext(rank, world, local_rank, device)


# ---------------------------------------------------------------------- expert parallelism
class _AllToAll(torch.autograd.Function):
    """``all_to_all_single`` with uneven splits, differentiable: the backward is the reverse exchange."""

    @staticmethod
    def forward(
        ctx: Any, x: torch.Tensor, out_splits: list[int], in_splits: list[int], group: dist.ProcessGroup | None
    ) -> torch.Tensor:
        ctx.splits, ctx.group = (out_splits, in_splits), group
        out = x.new_empty(sum(out_splits), *x.shape[1:])
        dist.all_to_all_single(out, x.contiguous(), out_splits, in_splits, group=group)
        return out

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> tuple[torch.Tensor, None, None, None]:
        out_splits, in_splits = ctx.splits
        back = grad.new_empty(sum(in_splits), *grad.shape[1:])
        dist.all_to_all_single(back, grad.contiguous(), in_splits, out_splits, group=ctx.group)
        return back, None, None, None


class ExpertParallelExperts(Experts):
    """This rank's block of a layer's routed experts; tokens reach their experts by all-to-all.

    Same contract as :meth:`Experts.forward` (``x`` [N, D] with routing ``weights``/``indices`` [N, K] in global
    expert ids -> [N, D], plus ``shared(x)`` if given); every rank of ``group`` must call it together. The
    parameters keep the names and layout of :class:`Experts` (``gate_up_proj`` [E_local, 2I, D], ``down_proj``
    [E_local, D, I]).
    """

    def __init__(self, full: Experts, rank: int, world_size: int, group: dist.ProcessGroup | None = None) -> None:
        nn.Module.__init__(self)  # not Experts.__init__: that would allocate every expert
        if full.n_experts % world_size:
            raise TrainError(
                f"train: {full.n_experts} routed experts cannot be split evenly over {world_size} processes"
            )
        self.n_experts = full.n_experts
        self.inter = full.inter
        self.world_size = world_size
        self.n_local = full.n_experts // world_size
        self.first = rank * self.n_local
        self.group = group
        block = slice(self.first, self.first + self.n_local)
        self.gate_up_proj = nn.Parameter(full.gate_up_proj.detach()[block].clone())
        self.down_proj = nn.Parameter(full.down_proj.detach()[block].clone())

    def forward(
        self, x: torch.Tensor, weights: torch.Tensor, indices: torch.Tensor, shared: nn.Module | None = None
    ) -> torch.Tensor:
        n, k = indices.shape
        shared_out = shared(x) if shared is not None else None  # replicated on every rank, not dispatched
        w13, w2 = self.gate_up_proj, self.down_proj
        if torch.is_autocast_enabled(x.device.type):  # grouped GEMMs are not autocast ops: cast explicitly
            dtype = torch.get_autocast_dtype(x.device.type)
            x, w13, w2 = x.to(dtype), w13.to(dtype), w2.to(dtype)
        flat = indices.flatten()
        order = flat.argsort(stable=True)  # (token, slot) pairs sorted by expert, hence by owning rank
        counts = torch.bincount(flat, minlength=self.n_experts)
        # Rows this rank sends to each rank's experts, and (exchanged) the rows each rank sends to ours.
        recv_counts = torch.empty_like(counts)
        dist.all_to_all_single(recv_counts, counts, group=self.group)
        recv_counts = recv_counts.view(self.world_size, self.n_local)  # [source rank, local expert]
        send_splits = counts.view(self.world_size, self.n_local).sum(1).tolist()
        recv_splits = recv_counts.sum(1).tolist()
        rows = _AllToAll.apply(x[order // k], recv_splits, send_splits, self.group)  # by source, then expert
        local_expert = torch.arange(self.n_local, device=x.device).repeat(self.world_size)
        by_expert = torch.repeat_interleave(local_expert, recv_counts.flatten()).argsort(stable=True)
        offsets = recv_counts.sum(0).cumsum(0).to(torch.int32)
        if rows.shape[0]:
            h = grouped_mm(rows[by_expert], w13.transpose(1, 2), offsets)
            gate, up = h.split(self.inter, dim=-1)
            out = grouped_mm(F.silu(gate) * up, w2.transpose(1, 2), offsets)
        else:  # nothing routed here: an empty product still ties the weights into the graph (zero gradients)
            out = (rows @ w13[0].T)[:, : self.inter] @ w2[0].T
        back = torch.empty_like(out)
        back[by_expert] = out
        ys = _AllToAll.apply(back, send_splits, recv_splits, self.group)
        y = torch.empty_like(ys)
        y[order] = ys  # back to (token, slot) order
        y = y.view(n, k, -1).float() * weights[..., None]
        out = y.sum(dim=1).to(x.dtype)
        return out if shared_out is None else out + shared_out

    forward_loop = forward  # the per-expert reference loop needs every expert: one rank has only its block


def shard_experts(model: nn.Module, ctx: DistContext, group: dist.ProcessGroup | None = None) -> list[str]:
    """Replace every MoE layer's routed experts by this rank's block; returns the sharded parameter names."""
    names = []
    for mod_name, module in list(model.named_modules()):
        if isinstance(module, MoE) and not isinstance(module.experts, ExpertParallelExperts):
            module.experts = ExpertParallelExperts(module.experts, ctx.rank, ctx.world_size, group)
            names += [f"{mod_name}.experts.gate_up_proj", f"{mod_name}.experts.down_proj"]
    return names


def _gather_blocks(local: torch.Tensor, ctx: DistContext) -> torch.Tensor | None:
    """Concatenate every rank's block along dim 0 on rank 0 (None elsewhere)."""
    parts = [torch.empty_like(local) for _ in range(ctx.world_size)] if ctx.is_main else None
    dist.gather(local.contiguous(), parts, dst=0)
    return torch.cat(parts) if parts is not None else None


# ---------------------------------------------------------------------- trainer
class DistributedTrainer(Trainer):
    """:class:`~lm.train.Trainer` over all ranks of the process group (DDP, optionally expert-parallel).

    ``fit`` and ``evaluate`` are the single-process ones: every rank draws the same global batch and
    :meth:`train_step` keeps its own row block. Only rank 0 logs and writes checkpoints.

    Args:
        model: the full model, identical on every rank (same seed or same checkpoint).
        expert_parallel: shard the routed experts over the ranks instead of replicating them.
    """

    def __init__(
        self,
        model: LanguageModel,
        cfg: TrainConfig,
        ctx: DistContext,
        expert_parallel: bool = True,
        log: Callable[[str], None] = print,
    ) -> None:
        if cfg.batch_size % ctx.world_size:
            raise TrainError(f"train: batch_size {cfg.batch_size} must be a multiple of {ctx.world_size} processes")
        self.ctx = ctx
        model.to(ctx.device)
        self.sharded = shard_experts(model, ctx) if expert_parallel else []
        super().__init__(model, cfg, log=log if ctx.is_main else lambda _: None)
        # Each rank's own clock would stop the ranks at different steps (and hang the collectives): the time
        # limit is checked here instead, on one agreed clock, and ends `fit` by moving its last step.
        self.cfg = replace(cfg, max_seconds=None)
        self.max_seconds = cfg.max_seconds
        self.started: float | None = None
        params = dict(model.named_parameters())
        self.expert_params = [params[n] for n in self.sharded]
        for p in self.expert_params:
            # Each expert's gradient sums every rank's loss; DDP averages the replicated ones: match it.
            p.register_hook(lambda g: g / ctx.world_size)
        DistributedDataParallel._set_params_and_buffers_to_ignore_for_model(model, self.sharded)
        # Buffers are not re-broadcast before each forward: the correction biases stay equal because every rank
        # applies the same all-reduced expert loads (newer PyTorch renames the option).
        no_sync = "forward_sync_buffers" if "forward_sync_buffers" in _DDP_OPTIONS else "broadcast_buffers"
        self.ddp = DistributedDataParallel(
            model, device_ids=[ctx.device.index] if ctx.device.type == "cuda" else None, **{no_sync: False}
        )

    def _forward(self, batch: torch.Tensor) -> LMOutput:
        batch = batch.to(self.device, non_blocking=True)
        with self.autocast or nullcontext():
            return self.ddp(batch[:, :-1], labels=batch[:, 1:], mtp_loss_weight=self.cfg.mtp_loss_weight)

    def _clip_gradients(self) -> torch.Tensor:
        """Clip by the norm over all ranks' gradients (replicated ones counted once); returns that norm."""
        max_norm = self.cfg.grad_clip if self.cfg.grad_clip > 0 else math.inf
        sharded = {id(p) for p in self.expert_params}
        squares = torch.zeros(2, device=self.device)  # [replicated, this rank's experts]
        for p in self.model.parameters():
            if p.grad is not None:
                squares[int(id(p) in sharded)] += p.grad.float().square().sum()
        own = squares[1:].clone()
        dist.all_reduce(own)
        total = (squares[0] + own[0]).sqrt()
        coef = torch.clamp(max_norm / (total + 1e-6), max=1.0)  # as torch.nn.utils.clip_grad_norm_
        for p in self.model.parameters():
            if p.grad is not None:
                p.grad.mul_(coef)
        return total

    def _update_biases(self) -> list[torch.Tensor]:
        """Balancing-bias update from the expert loads of the whole global batch."""
        gates = self.model.gates()
        if not gates:
            return []
        loads = torch.stack([g.expert_load for g in gates])
        dist.all_reduce(loads)
        for g, load in zip(gates, loads):
            g.expert_load.copy_(load)
        return [g.update_bias(self.cfg.bias_update_speed) for g in gates]

    def _stop_when_out_of_time(self) -> None:
        if self.max_seconds is None:
            return
        assert self.started is not None
        late = torch.tensor([float(time.perf_counter() - self.started > self.max_seconds)], device=self.device)
        dist.broadcast(late, src=0)  # rank 0's clock decides for everyone
        if late.item() and self.step < self.cfg.steps:
            self.log(f"stopping at step {self.step}: max_seconds reached")
            self.cfg.steps = self.step  # `fit` ends its loop, then validates and saves as usual

    def train_step(self, batch: torch.Tensor, stats: bool = True) -> dict[str, float]:
        """One optimizer step on the global ``batch`` [B, S + 1] (this rank trains on its B / world rows)."""
        if self.started is None:
            self.started = time.perf_counter()
        rows = batch.chunk(self.ctx.world_size)[self.ctx.rank]
        self.model.train()
        lr = self._set_lr()
        out = self._forward(rows)
        out.loss.backward()
        grad_norm = self._clip_gradients()
        self.optimizer.step()
        self.optimizer.zero_grad(set_to_none=True)
        loads = self._update_biases()
        self.step += 1
        self._stop_when_out_of_time()
        if not stats:
            return {}
        names = [n for n in ("loss", "main_loss", "mtp_loss", "aux_loss") if getattr(out, n) is not None]
        means = torch.stack([getattr(out, n).detach().float() for n in names])
        dist.all_reduce(means)  # equal row blocks: the mean of the ranks' means is the global mean
        res = {"step": float(self.step), "lr": lr}
        res.update({n: float(v) / self.ctx.world_size for n, v in zip(names, means)})
        res["grad_norm"] = float(grad_norm)
        if loads:
            res["max_load_ratio"] = max_load_ratio(loads)
        return res

    @torch.no_grad()
    def evaluate(self, batches: Sequence[torch.Tensor]) -> dict[str, float]:
        """The single-process validation figures, each rank scoring its row block of every batch."""
        world = self.ctx.world_size
        if any(b.shape[0] % world for b in batches):
            return super().evaluate(batches)  # uneven blocks would weigh rows unequally: every rank scores all
        local = super().evaluate([b.chunk(world)[self.ctx.rank] for b in batches])
        means = torch.tensor(list(local.values()), dtype=torch.float64, device=self.device)
        dist.all_reduce(means)
        return {k: float(v) / world for k, v in zip(local, means)}

    # ------------------------------------------------------------------ checkpoints
    def _expert_states(self) -> Iterator[tuple[dict, str, nn.Parameter]]:
        for p in self.expert_params:
            state = self.optimizer.state.get(p, {})
            for key, value in list(state.items()):
                if torch.is_tensor(value) and value.shape == p.shape:
                    yield state, key, p

    @contextmanager
    def _full_experts_on_main(self) -> Iterator[None]:
        """Rank 0 sees every expert (weights and optimizer moments) in full inside the block."""
        local = [p.data for p in self.expert_params]
        moments = list(self._expert_states())
        kept = [state[key] for state, key, _ in moments]
        try:
            for p in self.expert_params:
                full = _gather_blocks(p.data, self.ctx)
                if full is not None:
                    p.data = full
            for state, key, _ in moments:
                full = _gather_blocks(state[key], self.ctx)
                if full is not None:
                    state[key] = full
            yield
        finally:
            for p, data in zip(self.expert_params, local):
                p.data = data
            for (state, key, _), value in zip(moments, kept):
                state[key] = value

    def save_checkpoint(self, out_dir: str | Path) -> None:
        """Rank 0 writes the same files as a single-process trainer; every rank must call this."""
        with self._full_experts_on_main():
            if self.ctx.is_main:
                super().save_checkpoint(out_dir)
        dist.barrier()

    def load_checkpoint(self, out_dir: str | Path) -> None:
        """Resume from a checkpoint written by any number of processes; every rank reads it and keeps its block."""
        shapes = [p.shape for p in self.expert_params]
        for p, shape in zip(self.expert_params, shapes):
            p.data = p.data.new_empty(shape[0] * self.ctx.world_size, *shape[1:])
        try:
            super().load_checkpoint(out_dir)
        finally:
            for p, shape in zip(self.expert_params, shapes):
                block = slice(self.ctx.rank * shape[0], (self.ctx.rank + 1) * shape[0])
                full = p.data.shape
                p.data = p.data[block].clone()
                state = self.optimizer.state.get(p, {})
                for key, value in list(state.items()):
                    if torch.is_tensor(value) and value.shape == full:
                        state[key] = value[block].clone()


def leave_process_group(synchronise: bool = True) -> None:
    """Leave torchrun's process group if this process joined one.

    Args:
        synchronise: first wait until every rank gets here; gloo aborts a process whose peer leaves while it still
            uses the group. Off on an error path, where the other ranks may never arrive.
    """
    if dist.is_available() and dist.is_initialized():
        if synchronise:
            dist.barrier()
        dist.destroy_process_group()


def make_trainer(
    model: LanguageModel,
    cfg: TrainConfig,
    log: Callable[[str], None] = print,
    expert_parallel: bool = True,
) -> Trainer:
    """A :class:`~lm.train.Trainer` for this launch: distributed under torchrun with several processes, else plain."""
    ctx = init_from_env()
    if ctx.world_size == 1:
        return Trainer(model.to(ctx.device), cfg, log=log)
    return DistributedTrainer(model, cfg, ctx, expert_parallel=expert_parallel, log=log)
