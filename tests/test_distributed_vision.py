"""Vision trainers under torchrun: two gloo processes on CPU against one process on the same global batches.

For each trainer (tiny configurations, the real command lines):
- one process trains 2 steps (checkpoint ``one@2``) and resumes to step 4: the reference trajectory;
- two processes (``torchrun --nproc_per_node 2``) train the first 2 steps from scratch (``two@2``), and resume the
  one-process checkpoint ``one@2`` to step 4;
- one process resumes the two-process checkpoint ``two@2`` to step 4.
Every logged loss must follow the reference, and ``two@2`` must hold the weights and optimizer moments of ``one@2``
in the same files. A layer-level check compares the synchronised batch norm with ``BatchNorm2d`` on the whole batch.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from safetensors.torch import load_file, save_file

from tests.conftest import REPO, _free_port
from vision.distributed import DistContext, DistributedSetupError, ShardSampler, init_from_env

WORLD = 2
TRAINERS = {
    "detector": {
        "module": "vision.train_detector",
        "dir_flag": "--out",
        "args": "--backbone lcnet_050 --head-channels 16 --side 128 --infer-side 128 --batch 4 --workers 0 "
        "--log-every 1 --cpu --warmup 1 --lr 1e-3 --save-every 1000",
        "losses": ("total", "heat", "pin", "box", "off"),
    },
    "inpaint": {
        "module": "vision.train_inpaint",
        "dir_flag": "--ckpt",
        "args": "--minutes 0 --batch 4 --crop 64 --workers 0 --log-every 0 --gan-start 0 --warmup 1 --cpu "
        "--save-every 1000 --aim 0.5 --page-size --restore 2",
        "losses": ("mask", "hole", "valid", "edge", "restore", "kl", "d"),
    },
}


LAUNCH = """
import json, sys
import torch.distributed as dist
import vision.train_detector, vision.train_inpaint
from vision.distributed import init_from_env

init_from_env(cpu=True, timeout_s=120)  # the trainers' command lines reuse this group (and leave it open)
for module, argv in json.loads(sys.argv[1]):
    sys.modules[module].main(argv)
dist.barrier()
dist.destroy_process_group()
"""


def _argv(name: str, run_dir: Path, steps: int, extra: list[str]) -> list[str]:
    spec = TRAINERS[name]
    return ["train", spec["dir_flag"], str(run_dir), "--steps", str(steps), *spec["args"].split(), *extra]


def _one_process(name: str, run_dir: Path, steps: int, extra: list[str]) -> None:
    module = __import__(TRAINERS[name]["module"], fromlist=["main"])
    module.main(_argv(name, run_dir, steps, extra))


def _torchrun(args: list[str]) -> None:
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={WORLD}", *args]
    env = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1"}
    proc = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-4000:]


def _log(run_dir: Path) -> list[dict[str, float]]:
    lines = (run_dir / "train_log.jsonl").read_text(encoding="utf-8").splitlines()
    return [json.loads(line) for line in lines]


def _tensors(run_dir: Path) -> dict[str, torch.Tensor]:
    return {f"{p.name}:{k}": v for p in sorted(run_dir.glob("*.safetensors")) for k, v in load_file(p).items()}


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Every trainer's runs (folders under root/NAME); all two-process runs share one torchrun launch."""
    from vision.train_inpaint import pack

    root = tmp_path_factory.mktemp("dist")
    pack(root / "pack.npz", 3, 0)
    extra = {
        "detector": [],
        "inpaint": ["--data", str(root / "pack.npz"), "--weights", str(root / "weights")],
    }
    dirs = {name: root / name for name in TRAINERS}
    two_process_runs = []
    for name, d in dirs.items():
        _one_process(name, d / "one", 2, extra[name])
        shutil.copytree(d / "one", d / "one@2")
        _one_process(name, d / "one", 4, extra[name])
        shutil.copytree(d / "one@2", d / "one-two")
        two_process_runs.append((TRAINERS[name]["module"], _argv(name, d / "two", 2, extra[name])))  # from scratch
        two_process_runs.append((TRAINERS[name]["module"], _argv(name, d / "one-two", 4, extra[name])))  # 1 -> 2
    script = root / "launch.py"
    script.write_text(LAUNCH, encoding="utf-8")
    _torchrun([str(script), json.dumps(two_process_runs)])
    for name, d in dirs.items():
        shutil.copytree(d / "two", d / "two@2")
        _one_process(name, d / "two", 4, extra[name])  # 2 -> 1
    return dirs


def _assert_same_trajectory(name: str, got: list[dict], want: list[dict]) -> None:
    assert [g["step"] for g in got] == [w["step"] for w in want] and got
    for g, w in zip(got, want):
        for key in TRAINERS[name]["losses"]:
            assert g[key] == pytest.approx(w[key], rel=TOL[name], abs=1e-5), f"step {g['step']} {key}"


TOL = {"detector": 1e-3, "inpaint": 2e-4}


@pytest.mark.parametrize("name", list(TRAINERS))
def test_two_processes_follow_the_one_process_trajectory(runs: dict[str, Path], name: str) -> None:
    d = runs[name]
    one = _log(d / "one")
    assert [r["step"] for r in one] == [1, 2, 3, 4]
    _assert_same_trajectory(name, _log(d / "two@2"), one[:2])  # from scratch
    _assert_same_trajectory(name, _log(d / "one-two")[2:], one[2:])  # resumed from one process


@pytest.mark.parametrize("name", list(TRAINERS))
def test_checkpoints_are_interchangeable(runs: dict[str, Path], name: str) -> None:
    d = runs[name]
    _assert_same_trajectory(name, _log(d / "two")[2:], _log(d / "one")[2:])  # written by two, resumed by one
    files = [sorted(p.name for p in (d / run).iterdir()) for run in ("two@2", "one@2")]
    assert files[0] == files[1]
    got, want = _tensors(d / "two@2"), _tensors(d / "one@2")
    assert got.keys() == want.keys()
    assert any(k.startswith(("checkpoint.safetensors:opt.", "optim.")) for k in got)  # optimizer moments too
    errors = {}
    for key, value in want.items():
        if value.is_floating_point():
            errors[key] = float((got[key].double() - value.double()).norm() / value.double().norm().clamp(min=1e-12))
        else:
            assert torch.equal(got[key], value), key
    # Adam's first steps move each weight by about the learning rate whatever the size of its gradient, so a
    # weight whose gradient is near zero can differ by a step: the bound on single tensors is loose, the median tight.
    worst = max(errors, key=errors.get)
    assert errors[worst] <= 0.1, f"{worst}: relative difference {errors[worst]:.2e}"
    assert sorted(errors.values())[len(errors) // 2] <= 1e-3


@pytest.mark.parametrize("name", list(TRAINERS))
def test_torchrun_command_line(runs: dict[str, Path], name: str, tmp_path: Path) -> None:
    """The command the README gives, `torchrun ... -m vision.train_NAME train ...`, on its own."""
    extra = []
    if name == "inpaint":
        extra = ["--data", str(runs[name].parent / "pack.npz"), "--weights", str(tmp_path / "w")]
    _torchrun(["-m", TRAINERS[name]["module"], *_argv(name, tmp_path / "run", 2, extra)])
    _assert_same_trajectory(name, _log(tmp_path / "run"), _log(runs[name] / "one")[:2])


# ---------------------------------------------------------------------- pieces
def test_shard_sampler_splits_each_global_batch_into_rank_blocks() -> None:
    ranks = [list(ShardSampler(6, r, 3, start=12, stop=30)) for r in range(3)]
    assert ranks == [[12, 13, 18, 19, 24, 25], [14, 15, 20, 21, 26, 27], [16, 17, 22, 23, 28, 29]]
    assert len(ShardSampler(6, 0, 3, start=12, stop=30)) == 6
    assert list(ShardSampler(4, 0, 1, stop=10)) == list(range(8))  # only whole global batches
    with pytest.raises(DistributedSetupError, match="cannot be split evenly over 4 processes"):
        DistContext(0, 4, 0, torch.device("cpu")).local_batch(6)


def _batchnorm_rank(rank: int, port: int, out: str) -> None:
    os.environ.update(
        MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), RANK=str(rank), WORLD_SIZE=str(WORLD), LOCAL_RANK=str(rank)
    )
    torch.set_num_threads(1)
    ctx = init_from_env(cpu=True, timeout_s=60)
    x, w, bn = _batchnorm_case()
    sync = ctx.sync_batchnorm(torch.nn.Sequential(bn))
    rows = slice(rank * 3, rank * 3 + 3)
    xr = x[rows].clone().requires_grad_()
    y = sync(xr)
    (y * w[rows]).sum().backward()
    grads = torch.cat([p.grad for p in sync.parameters()])
    dist.all_reduce(grads)  # the parameters' gradient over the whole batch
    y2 = sync(x[rows])  # a second training pass (running statistics updated twice)
    if ctx.is_main:
        res = {"y": y, "y2": y2, "x_grad": xr.grad, "grads": grads, **sync.state_dict()}
        save_file({k: v.detach().contiguous() for k, v in res.items()}, out)
    dist.barrier()  # no rank leaves the group while a peer still uses it (gloo aborts the process otherwise)
    dist.destroy_process_group()
    # Gloo's threads can still abort the process in the interpreter's teardown (SIGABRT, "terminate called without
    # an active exception": 3 of 28 runs on a loaded machine): the results are written, so leave without it.
    os._exit(0)


def _batchnorm_case() -> tuple[torch.Tensor, torch.Tensor, torch.nn.BatchNorm2d]:
    """Six images whose channels have a large mean and spreads from 0.1 to 2; a random affine batch norm."""
    gen = torch.Generator().manual_seed(0)
    x = 3.0 + torch.randn(6, 5, 7, 7, generator=gen) * torch.linspace(0.1, 2.0, 5)[:, None, None]
    bn = torch.nn.BatchNorm2d(5)
    with torch.no_grad():
        bn.weight.normal_(generator=gen)
        bn.bias.normal_(generator=gen)
    return x, torch.randn(6, 5, 7, 7, generator=gen), bn


def test_global_batchnorm_equals_batchnorm_on_the_whole_batch(tmp_path: Path) -> None:
    out = tmp_path / "rank0.safetensors"
    mp.spawn(_batchnorm_rank, args=(_free_port(), str(out)), nprocs=WORLD, join=True)
    got = load_file(out)
    x, w, bn = _batchnorm_case()
    ref = torch.nn.Sequential(bn)
    xr = x.clone().requires_grad_()
    y = ref(xr)
    (y * w).sum().backward()
    y2 = ref(x)
    close = {"rtol": 1e-5, "atol": 1e-5}
    torch.testing.assert_close(got["y"], y[:3].detach(), **close)
    torch.testing.assert_close(got["x_grad"], xr.grad[:3], **close)
    torch.testing.assert_close(got["grads"], torch.cat([p.grad for p in ref.parameters()]), **close)
    torch.testing.assert_close(got["y2"], y2[:3].detach(), **close)
    for key, value in ref.state_dict().items():  # running mean, unbiased variance, batches tracked
        torch.testing.assert_close(got[key], value, **close)
