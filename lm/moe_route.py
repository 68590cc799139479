"""The router's selection as one Triton kernel for inference on CUDA (decode steps).

After the float32 gate GEMM, :meth:`lm.moe.Gate._route` is a chain of small ops: scoring, the biased choice,
group ranking and masking, top-k, the gather of the chosen scores and their normalisation. At decode sizes each
is a kernel launch of a few microseconds (top-k alone is two), per MoE layer and step. Here one program per token
does all of it in registers: scores and choice over the experts, groups ranked by their two best (or best)
choices, then ``top_k`` rounds of arg-max. Ties between exactly equal choices may resolve to another expert of the
same choice value than ``torch.topk`` picks; the first-use check accepts exactly that and nothing else.

The kernel is checked against the plain ops on first use (outside CUDA graph capture) and, should it fail or
disagree, not used again.
"""

from __future__ import annotations

from typing import NamedTuple

import torch

from lm.kernels import run_checked, tl, triton

_STATE = {"usable": triton is not None, "checked": False}

if triton is not None:

    @triton.jit
    def _route_kernel(
        logits_ptr,
        bias_ptr,
        weights_ptr,
        idx_ptr,
        route_scale,
        E: tl.constexpr,
        K: tl.constexpr,
        KP: tl.constexpr,
        GROUPS: tl.constexpr,
        TOPK_GROUP: tl.constexpr,
        SIGMOID: tl.constexpr,
        NOAUX: tl.constexpr,
        TWO_BEST: tl.constexpr,
        NORM: tl.constexpr,
    ):
        # Program = one token: logits [E] -> gate weights [K] (float32) and expert indices [K] (int64).
        row = tl.program_id(0)
        e = tl.arange(0, E)
        logit = tl.load(logits_ptr + row * E + e)
        if SIGMOID:
            scores = tl.sigmoid(logit)
        else:
            z = tl.exp(logit - tl.max(logit, 0))
            scores = z / tl.sum(z, 0)
        choice = scores
        if NOAUX:
            choice = scores + tl.load(bias_ptr + e)
        if GROUPS > 1:
            per: tl.constexpr = E // GROUPS
            grouped = tl.reshape(choice, (GROUPS, per))
            best = tl.max(grouped, 1)
            if TWO_BEST:  # sum of the two best: mask one arg-max position per group (ties count twice, as topk)
                first = tl.argmax(grouped, 1)
                others = tl.where(tl.arange(0, per)[None, :] == first[:, None], float("-inf"), grouped)
                best = best + tl.max(others, 1)
            g = tl.arange(0, GROUPS)
            keep = tl.zeros([GROUPS], tl.int1)
            for _ in tl.static_range(TOPK_GROUP):
                pick = tl.argmax(best, 0)
                keep = keep | (g == pick)
                best = tl.where(g == pick, float("-inf"), best)
            keep_e = tl.reshape(tl.broadcast_to(keep[:, None], (GROUPS, per)), (E,))
            choice = tl.where(keep_e, choice, float("-inf"))
        slot = tl.arange(0, KP)
        picked = tl.zeros([KP], tl.int64)
        weight = tl.zeros([KP], tl.float32)
        for k in tl.static_range(K):
            pick = tl.argmax(choice, 0)
            picked = tl.where(slot == k, pick.to(tl.int64), picked)
            weight = tl.where(slot == k, tl.sum(tl.where(e == pick, scores, 0.0), 0), weight)
            choice = tl.where(e == pick, float("-inf"), choice)
        if NORM:
            weight = weight / (tl.sum(weight, 0) + 1e-20)
        weight = weight * route_scale
        tl.store(weights_ptr + row * K + slot, weight, mask=slot < K)
        tl.store(idx_ptr + row * K + slot, picked, mask=slot < K)


class Routing(NamedTuple):
    """A gate's selection settings (Hugging Face config names; see :class:`lm.moe.Gate`)."""

    top_k: int
    n_group: int
    topk_group: int
    scoring_func: str  # "sigmoid" or "softmax"
    topk_method: str  # "noaux_tc", "group_limited_greedy" or "greedy"
    norm_topk_prob: bool
    route_scale: float  # routed_scaling_factor


def route_kernel(logits: torch.Tensor, bias: torch.Tensor, r: Routing) -> tuple[torch.Tensor, torch.Tensor]:
    """Gate weights [N, K] and expert indices [N, K] of float32 ``logits`` [N, E], unchecked."""
    n, n_experts = logits.shape
    weights = torch.empty(n, r.top_k, dtype=torch.float32, device=logits.device)
    indices = torch.empty(n, r.top_k, dtype=torch.long, device=logits.device)
    _route_kernel[(n,)](
        logits.contiguous(),
        bias,
        weights,
        indices,
        r.route_scale,
        E=n_experts,
        K=r.top_k,
        KP=triton.next_power_of_2(r.top_k),
        GROUPS=r.n_group if r.n_group > 1 and r.topk_method != "greedy" else 1,
        TOPK_GROUP=r.topk_group,
        SIGMOID=r.scoring_func == "sigmoid",
        NOAUX=r.topk_method == "noaux_tc",
        TWO_BEST=r.topk_method == "noaux_tc",
        NORM=r.norm_topk_prob and r.top_k > 1,
        num_warps=1 if n_experts <= 64 else 2,
    )
    return weights, indices


def select(logits: torch.Tensor, bias: torch.Tensor, r: Routing) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """The selection in plain PyTorch ops: gate weights [N, K], expert indices [N, K] and the scores [N, E]."""
    n_experts = logits.shape[-1]
    scores = logits.sigmoid() if r.scoring_func == "sigmoid" else logits.softmax(dim=-1)
    choice = scores + bias if r.topk_method == "noaux_tc" else scores
    if r.n_group > 1 and r.topk_method != "greedy":
        grouped = choice.view(-1, r.n_group, n_experts // r.n_group)  # [N, G, E/G]
        if r.topk_method == "noaux_tc":
            group_scores = grouped.topk(2, dim=-1)[0].sum(dim=-1)
        else:
            group_scores = grouped.amax(dim=-1)
        keep = group_scores.topk(r.topk_group, dim=-1, sorted=False)[1]  # [N, topk_group]
        dropped = torch.ones_like(group_scores, dtype=torch.bool).scatter_(1, keep, False)
        choice = grouped.masked_fill(dropped[..., None], float("-inf")).flatten(1)
    # Unsorted, as transformers takes them (a sort after the selection costs a kernel per layer on CUDA)
    indices = choice.topk(r.top_k, dim=-1, sorted=False)[1]  # [N, K]
    weights = scores.gather(1, indices)
    if r.norm_topk_prob and r.top_k > 1:
        weights = weights / (weights.sum(dim=-1, keepdim=True) + 1e-20)
    return weights * r.route_scale, indices, scores


def usable(logits: torch.Tensor, r: Routing) -> bool:
    """Whether :func:`route` takes the kernel: CUDA inference, a power-of-two expert count of at most 256."""
    e = logits.shape[-1]
    return (
        _STATE["usable"]
        and logits.is_cuda
        and not torch.is_grad_enabled()
        and e & (e - 1) == 0
        and r.top_k <= e <= 256
        and e % max(r.n_group, 1) == 0
    )


def _disagreement(
    got: tuple[torch.Tensor, torch.Tensor], logits: torch.Tensor, bias: torch.Tensor, r: Routing
) -> str | None:
    """None when the kernel's experts are the plain selection's up to exact ties of the choice value and its weights
    are their (normalised, scaled) scores."""
    weights, indices = got
    ref_indices, scores = select(logits, bias, r)[1:]
    choice = scores + bias if r.topk_method == "noaux_tc" else scores
    if not torch.equal(choice.gather(1, indices).sort(1)[0], choice.gather(1, ref_indices).sort(1)[0]):
        return "other experts"
    expected = scores.gather(1, indices)
    if r.norm_topk_prob and r.top_k > 1:
        expected = expected / (expected.sum(dim=-1, keepdim=True) + 1e-20)
    if not torch.allclose(weights, expected * r.route_scale, rtol=1e-5, atol=1e-6):
        return "other gate weights"
    return None


def route(logits: torch.Tensor, bias: torch.Tensor, r: Routing) -> tuple[torch.Tensor, torch.Tensor]:
    """:func:`select` (weights and indices) through the kernel when :func:`usable`, checked against the plain ops
    on its first call."""
    if not usable(logits, r):
        return select(logits, bias, r)[:2]
    return run_checked(
        _STATE,
        "checked",
        logits.is_cuda and torch.cuda.is_current_stream_capturing(),
        lambda: route_kernel(logits, bias, r),
        lambda: select(logits, bias, r)[:2],
        lambda got: _disagreement(got, logits, bias, r),
        "routing kernel",
    )


if triton is not None:
    # Compiled decode blocks (torch.compile) see the selection as one opaque op (its first-call check and the
    # choice between kernel and plain ops happen at run time); the settings travel as plain arguments.
    @torch.library.custom_op("ohmlens::moe_route", mutates_args=())
    def _route_op(
        logits: torch.Tensor,
        bias: torch.Tensor,
        top_k: int,
        n_group: int,
        topk_group: int,
        scoring_func: str,
        topk_method: str,
        norm_topk_prob: bool,
        route_scale: float,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        settings = Routing(top_k, n_group, topk_group, scoring_func, topk_method, norm_topk_prob, route_scale)
        return route(logits, bias, settings)

    @_route_op.register_fake
    def _(logits: torch.Tensor, bias: torch.Tensor, top_k: int, *args: object) -> tuple[torch.Tensor, torch.Tensor]:
        n = logits.shape[0]
        return logits.new_empty(n, top_k), logits.new_empty(n, top_k, dtype=torch.long)
