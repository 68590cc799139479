"""Distributed LM training on CPU: two gloo processes (DDP + expert parallelism) against one process.

One spawn of two ranks runs every distributed case (starting processes costs more than the tiny model's
steps) and rank 0 writes what it measured; the single-process references run in the test process.
"""

from __future__ import annotations

import copy
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from lm.config import preset
from lm.distributed import DistContext, DistributedTrainer, ExpertParallelExperts, init_from_env, leave_process_group
from lm.model import LanguageModel
from lm.moe import MoE
from lm.train import TrainConfig, Trainer
from tests.conftest import REPO, _free_port
from tests.test_lm_train import cycle_dataset

WORLD = 2
STEPS = 8
CFG = {"steps": STEPS, "batch_size": 8, "seq_len": 24, "lr": 1e-2, "warmup_steps": 2, "log_every": 1}
STAT_KEYS = ("loss", "main_loss", "mtp_loss", "grad_norm", "max_load_ratio")


def _batches() -> list[torch.Tensor]:
    """The global batches of every step (each rank of a distributed run takes its own rows)."""
    data = cycle_dataset()
    return [data.batch(CFG["batch_size"], CFG["seq_len"], seed=0, step=s) for s in range(STEPS)]


def _val_batches() -> list[torch.Tensor]:
    return cycle_dataset(n_docs=20, seed=5).sequential(4, CFG["seq_len"], max_batches=3)


def _model() -> LanguageModel:
    torch.manual_seed(1)
    return LanguageModel(preset("debug"))


def _stats(history: list[dict[str, float]]) -> list[dict[str, float]]:
    return [{k: h[k] for k in STAT_KEYS} for h in history if "loss" in h]


# ---------------------------------------------------------------------- rank side
def _moe_case(ctx: DistContext, skew: bool) -> dict[str, float]:
    """EP layer vs the single-process layer: outputs on this rank's tokens, input and parameter gradients."""
    torch.manual_seed(2)
    layer = MoE(preset("debug"))
    for p in layer.parameters():
        torch.nn.init.normal_(p, std=0.2)
    layer.gate.e_score_correction_bias.normal_(std=0.1)
    if skew:  # every token picks experts of rank 0's block: rank 1 receives nothing
        layer.gate.e_score_correction_bias[: layer.experts.n_experts // 2] += 10.0
    tokens, d = 12, layer.gate.weight.shape[1]
    x_all = torch.randn(WORLD, tokens, d)
    grad_all = torch.randn(WORLD, tokens, d)
    ref = copy.deepcopy(layer)
    x_ref = x_all.clone().requires_grad_()
    out_ref = ref(x_ref)
    (out_ref * grad_all).sum().backward()
    ep = copy.deepcopy(layer)
    ep.experts = ExpertParallelExperts(ep.experts, ctx.rank, ctx.world_size)
    x = x_all[ctx.rank : ctx.rank + 1].clone().requires_grad_()
    out = ep(x)
    (out * grad_all[ctx.rank : ctx.rank + 1]).sum().backward()
    block = slice(ep.experts.first, ep.experts.first + ep.experts.n_local)
    pairs = zip(ep.named_parameters(), ref.parameters())
    replicated = [(p.grad.clone(), q.grad) for (name, p), q in pairs if not name.startswith("experts.")]
    diffs = {
        "out": (out - out_ref[ctx.rank : ctx.rank + 1]).abs().max().item(),
        "x_grad": (x.grad - x_ref.grad[ctx.rank : ctx.rank + 1]).abs().max().item(),
        "gate_up_grad": (ep.experts.gate_up_proj.grad - ref.experts.gate_up_proj.grad[block]).abs().max().item(),
        "down_grad": (ep.experts.down_proj.grad - ref.experts.down_proj.grad[block]).abs().max().item(),
        "scale": out_ref.abs().max().item(),
    }
    worst = 0.0
    for mine, want in replicated:  # router and shared experts: each rank holds its tokens' part of the gradient
        dist.all_reduce(mine)
        worst = max(worst, ((mine - want).abs() / (1 + want.abs())).max().item())  # relative to the size
    diffs["replicated_grad"] = worst
    rows = torch.tensor([float(ep.experts.gate_up_proj.grad.abs().sum() > 0)])
    dist.all_reduce(rows)
    diffs["ranks_with_expert_grads"] = rows.item()
    return diffs


def _fit(trainer: Trainer, batches: list[torch.Tensor], out_dir: Path | None) -> list[dict[str, float]]:
    trainer.cfg.out_dir = str(out_dir) if out_dir else None
    before = len(trainer.history)
    trainer.fit(iter(batches))
    return trainer.history[before:]


def _rank_main(rank: int, port: int, out: str) -> None:
    os.environ.update(
        MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), RANK=str(rank), WORLD_SIZE=str(WORLD), LOCAL_RANK=str(rank)
    )
    torch.set_num_threads(1)
    ctx = init_from_env("gloo", timeout_s=120)
    root = Path(out)
    res: dict = {"moe": {"balanced": _moe_case(ctx, skew=False), "skewed": _moe_case(ctx, skew=True)}}
    batches = _batches()
    quiet = {"log": lambda _: None}
    ep = DistributedTrainer(_model(), TrainConfig(**CFG), ctx, expert_parallel=True, **quiet)
    first = _fit(ep, batches[: STEPS // 2], root / "ep-4")  # checkpoint after step 4 ...
    res["ep"] = _stats(first + _fit(ep, batches, root / "ep-8"))  # ... and after step 8
    res["ep_val"] = ep.evaluate(_val_batches())
    resumed = DistributedTrainer(_model(), TrainConfig(**CFG), ctx, expert_parallel=True, **quiet)
    resumed.load_checkpoint(root / "single-4")  # written by one process
    res["ep_from_single"] = _stats(_fit(resumed, batches, None))
    ddp = DistributedTrainer(_model(), TrainConfig(**CFG), ctx, expert_parallel=False, **quiet)
    res["ddp"] = _stats(_fit(ddp, batches, None))
    timed = DistributedTrainer(_model(), TrainConfig(**CFG, max_seconds=0.0), ctx, **quiet)
    _fit(timed, batches, None)  # every rank must stop at rank 0's step, or the collectives would hang
    res["timed_stop_step"] = timed.step
    if ctx.is_main:
        (root / "rank0.json").write_text(json.dumps(res))
    leave_process_group()


# ---------------------------------------------------------------------- test side
@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory) -> dict:
    """Single-process reference (checkpoints after steps 4 and 8), then the two-rank runs."""
    root = tmp_path_factory.mktemp("dist")
    torch.set_num_threads(1)
    batches = _batches()
    single = Trainer(_model(), TrainConfig(**CFG), log=lambda _: None)
    history = _fit(single, batches[: STEPS // 2], root / "single-4")
    history += _fit(single, batches, root / "single-8")
    mp.spawn(_rank_main, args=(_free_port(), str(root)), nprocs=WORLD, join=True)
    res = json.loads((root / "rank0.json").read_text())
    val = single.evaluate(_val_batches())
    return {"root": root, "single": _stats(history), "single_val": val, "single_model": single.model, **res}


def _assert_close(got: list[dict], want: list[dict]) -> None:
    assert len(got) == len(want) and got
    for step, (g, w) in enumerate(zip(got, want), start=1):
        for key in STAT_KEYS:
            assert g[key] == pytest.approx(w[key], rel=2e-4, abs=1e-5), f"step {step} {key}: {g[key]} vs {w[key]}"


@pytest.mark.parametrize("case", ["balanced", "skewed"])
def test_expert_parallel_layer_equals_single_process(runs: dict, case: str) -> None:
    d = runs["moe"][case]
    assert d["out"] <= 1e-5 and d["scale"] > 0.1
    assert max(d["x_grad"], d["gate_up_grad"], d["down_grad"], d["replicated_grad"]) <= 1e-5
    assert d["ranks_with_expert_grads"] == (1.0 if case == "skewed" else 2.0)


@pytest.mark.parametrize("mode", ["ep", "ddp"])
def test_two_processes_follow_the_single_process_loss_trajectory(runs: dict, mode: str) -> None:
    assert len(runs["single"]) == STEPS
    _assert_close(runs[mode], runs["single"])
    assert runs["single"][-1]["main_loss"] < runs["single"][0]["main_loss"]
    assert runs["timed_stop_step"] == 1  # a time limit stops every rank after the same step
    if mode == "ep":  # validation split over the ranks gives the single-process figures
        assert runs["ep_val"].keys() == runs["single_val"].keys()
        assert runs["ep_val"] == pytest.approx(runs["single_val"], rel=1e-4)


def test_checkpoints_load_on_any_world_size(runs: dict) -> None:
    root = runs["root"]
    # Two ranks resumed from the one-process checkpoint of step 4 ...
    _assert_close(runs["ep_from_single"], runs["single"][STEPS // 2 :])
    # ... one process resumed from the two-rank checkpoint of step 4 ...
    single = Trainer(_model(), TrainConfig(**CFG), log=lambda _: None)
    single.load_checkpoint(root / "ep-4")
    assert single.step == STEPS // 2
    _assert_close(_stats(_fit(single, _batches(), None)), runs["single"][STEPS // 2 :])
    # ... and the two-rank final checkpoint holds the single-process weights, in the same files.
    final = Trainer(_model(), TrainConfig(**CFG), log=lambda _: None)
    final.load_checkpoint(root / "ep-8")
    want = runs["single_model"].state_dict()
    for name, value in final.model.state_dict().items():
        torch.testing.assert_close(value, want[name], rtol=1e-3, atol=1e-4, msg=name)
    assert sorted(p.name for p in (root / "ep-8").iterdir()) == sorted(p.name for p in (root / "single-8").iterdir())


TORCHRUN_SCRIPT = """
import json, sys
import torch
from lm.distributed import make_trainer
from lm.train import TrainConfig
from tests.test_distributed_lm import CFG, _batches, _model, _stats
torch.set_num_threads(1)
trainer = make_trainer(_model(), TrainConfig(**CFG), log=lambda _: None)
history = _stats(trainer.fit(iter(_batches())))
if trainer.ctx.is_main:
    json.dump({"kind": type(trainer).__name__, "history": history}, open(sys.argv[1], "w"))
"""


@pytest.mark.slow
def test_torchrun_launch_matches_one_process(runs: dict, tmp_path: Path) -> None:
    """`torchrun --nproc_per_node 2` with make_trainer: the environment torchrun sets up is enough."""
    script = tmp_path / "train_probe.py"
    script.write_text(TORCHRUN_SCRIPT)
    out = tmp_path / "result.json"
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2", str(script), str(out)]
    env = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1"}
    proc = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    res = json.loads(out.read_text())
    assert res["kind"] == "DistributedTrainer"
    _assert_close(res["history"], runs["single"])
