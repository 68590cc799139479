"""Training loop for the language backbone (CPU for tests, CUDA with bf16 autocast for real runs).

AdamW with decoupled weight decay (not on norms, biases or the router), linear warm-up then cosine decay,
gradient-norm clipping, the MTP loss weighted by ``mtp_loss_weight``, auxiliary-loss-free expert balancing
(each router's correction bias moves by ``bias_update_speed`` against its expert load after every step), and
resumable checkpoints (weights in the Hugging Face layout, optimizer state and trainer state in safetensors/JSON).

Data interface (what the schematic and document pipelines plug in):

* :class:`TokenDataset` — one long 1-D array of token ids (documents joined by EOS); batches of random windows
  are a pure function of ``(seed, step)``, so a resumed run sees exactly the batches it would have seen;
* :func:`pack_documents` — turns any iterable of token sequences into ``[batch, seq_len + 1]`` tensors;
* :func:`text_files` — reads text files, for building a corpus with a :class:`~lm.tokenizer.Tokenizer`.

``Trainer.fit`` takes either a :class:`TokenDataset` or any iterator of ``[batch, seq_len + 1]`` id tensors.
Documents are joined by EOS, which also starts a prompt (GPT-2 convention; see the ``small`` preset).

Command line (``ohmlens train lm ...`` or ``python -m lm.train ...``; under ``torchrun`` it trains data/expert
parallel through :mod:`lm.distributed`)::

    ohmlens train lm docs/ more.txt --out runs/lm --preset small --steps 2000 --max-minutes 10
    ohmlens train lm docs/ --out runs/lm --resume --steps 4000
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file

from lm.checkpoint import load_weights, save_pretrained, weight_files
from lm.model import LanguageModel


class TrainError(ValueError):
    """Invalid training settings or data."""


@dataclass
class TrainConfig:
    """Optimisation settings.

    Attributes:
        steps: optimizer steps in total (the schedule's length).
        batch_size: sequences per step.
        seq_len: tokens per sequence (inputs; targets are shifted by one).
        lr: peak learning rate.
        min_lr_ratio: final learning rate as a fraction of ``lr``.
        warmup_steps: linear warm-up steps.
        weight_decay: AdamW decay for matrices and embeddings.
        beta1: AdamW beta1.
        beta2: AdamW beta2.
        grad_clip: max global gradient norm (0 = off).
        mtp_loss_weight: lambda for the mean MTP loss.
        bias_update_speed: gamma of the aux-loss-free balancing (0 = off).
        log_every: steps between log lines.
        eval_every: steps between validation passes (0 = only at the end).
        checkpoint_every: steps between checkpoints (0 = only at the end, if ``out_dir`` is set).
        out_dir: checkpoint folder.
        seed: data and init seed.
        max_seconds: stop early (and checkpoint) after this much training time.
    """

    steps: int = 1000
    batch_size: int = 16
    seq_len: int = 512
    lr: float = 2e-3
    min_lr_ratio: float = 0.1
    warmup_steps: int = 100
    weight_decay: float = 0.1
    beta1: float = 0.9
    beta2: float = 0.95
    grad_clip: float = 1.0
    mtp_loss_weight: float = 0.3
    bias_update_speed: float = 1e-3
    log_every: int = 10
    eval_every: int = 0
    checkpoint_every: int = 0
    out_dir: str | None = None
    seed: int = 0
    max_seconds: float | None = None

    def validate(self) -> None:
        """Raise :class:`TrainError` for impossible settings."""
        for name in ("steps", "batch_size", "seq_len"):
            if getattr(self, name) < 1:
                raise TrainError(f"train: {name} must be >= 1")
        if self.lr <= 0 or not 0 <= self.min_lr_ratio <= 1 or self.warmup_steps < 0:
            raise TrainError("train: lr must be > 0, min_lr_ratio in [0, 1], warmup_steps >= 0")


# ---------------------------------------------------------------------- data
class TokenDataset:
    """A 1-D tensor of token ids sampled as random windows ``[batch, seq_len + 1]``."""

    def __init__(self, tokens: torch.Tensor) -> None:
        if tokens.dim() != 1 or tokens.numel() < 2:
            raise TrainError("train: a token dataset needs a 1-D tensor of at least 2 ids")
        self.tokens = tokens

    def __len__(self) -> int:
        return self.tokens.numel()

    @classmethod
    def from_documents(cls, docs: Iterable[Sequence[int]], eos_id: int | None) -> TokenDataset:
        """Concatenate documents, separated by ``eos_id``."""
        flat: list[int] = []
        for doc in docs:
            flat.extend(int(t) for t in doc)
            if eos_id is not None:
                flat.append(eos_id)
        return cls(torch.tensor(flat, dtype=torch.int32))

    def split(self, val_fraction: float) -> tuple[TokenDataset, TokenDataset]:
        """Train/validation split by position (the validation part is the tail, never seen in training)."""
        cut = int(len(self) * (1 - val_fraction))
        return TokenDataset(self.tokens[:cut]), TokenDataset(self.tokens[cut:])

    def batch(self, batch_size: int, seq_len: int, seed: int, step: int) -> torch.Tensor:
        """Random windows for ``step`` (deterministic in ``seed`` and ``step``)."""
        if len(self) < seq_len + 1:
            raise TrainError(f"train: {len(self)} tokens cannot fill a window of {seq_len + 1}")
        gen = torch.Generator().manual_seed(seed * 1_000_003 + step)
        starts = torch.randint(0, len(self) - seq_len, (batch_size,), generator=gen)
        offsets = torch.arange(seq_len + 1)
        return self.tokens[starts[:, None] + offsets].long()

    def sequential(self, batch_size: int, seq_len: int, max_batches: int) -> list[torch.Tensor]:
        """Non-overlapping windows from the start (for a fixed validation set)."""
        n = min(max_batches * batch_size, (len(self) - 1) // seq_len)
        if n == 0:
            raise TrainError(f"train: {len(self)} tokens cannot fill a window of {seq_len + 1}")
        windows = torch.stack([self.tokens[i * seq_len : i * seq_len + seq_len + 1] for i in range(n)]).long()
        return list(windows.split(batch_size))


def pack_documents(
    docs: Iterable[Sequence[int] | torch.Tensor], batch_size: int, seq_len: int, eos_id: int | None
) -> Iterator[torch.Tensor]:
    """Concatenate documents (EOS between them) and yield ``[batch_size, seq_len + 1]`` id tensors."""
    buf: list[int] = []
    rows: list[list[int]] = []
    for doc in docs:
        buf.extend(int(t) for t in (doc.tolist() if isinstance(doc, torch.Tensor) else doc))
        if eos_id is not None:
            buf.append(eos_id)
        while len(buf) >= seq_len + 1:
            rows.append(buf[: seq_len + 1])
            buf = buf[seq_len:]  # the last target is the next window's first input
            if len(rows) == batch_size:
                yield torch.tensor(rows, dtype=torch.long)
                rows = []


def text_files(paths: Iterable[str | Path], max_bytes: int = 2_000_000) -> Iterator[str]:
    """Text of each readable file (undecodable bytes replaced, files above ``max_bytes`` skipped)."""
    for p in paths:
        path = Path(p)
        try:
            if path.stat().st_size > max_bytes:
                continue
            yield path.read_text(encoding="utf-8", errors="replace")
        except OSError:
            continue


# ---------------------------------------------------------------------- trainer
def cosine_lr(step: int, cfg: TrainConfig) -> float:
    """Learning-rate multiplier: linear warm-up to 1, cosine decay to ``min_lr_ratio`` at ``cfg.steps``."""
    if step < cfg.warmup_steps:
        return (step + 1) / cfg.warmup_steps
    progress = min(1.0, (step - cfg.warmup_steps) / max(1, cfg.steps - cfg.warmup_steps))
    return cfg.min_lr_ratio + (1 - cfg.min_lr_ratio) * 0.5 * (1 + math.cos(math.pi * progress))


def max_load_ratio(loads: list[torch.Tensor]) -> float:
    """The busiest expert's share of tokens over the uniform share, averaged over MoE layers (1.0 = balanced)."""
    shares = torch.stack([ld.max() * ld.numel() / ld.sum().clamp(min=1) for ld in loads])
    return float(shares.mean())


class Trainer:
    """Optimises a :class:`LanguageModel`; see the module docstring for what a step does."""

    def __init__(self, model: LanguageModel, cfg: TrainConfig, log: Callable[[str], None] = print) -> None:
        cfg.validate()
        self.model = model
        self.cfg = cfg
        self.log = log
        self.device = model.device
        self.step = 0
        decay, no_decay = [], []
        for name, p in model.named_parameters():
            if p.dim() >= 2 and not name.endswith("gate.weight"):
                decay.append(p)
            else:
                no_decay.append(p)
        groups = [{"params": decay, "weight_decay": cfg.weight_decay}, {"params": no_decay, "weight_decay": 0.0}]
        fused = self.device.type == "cuda"
        self.optimizer = torch.optim.AdamW(groups, lr=cfg.lr, betas=(cfg.beta1, cfg.beta2), fused=fused)
        self.autocast = torch.autocast("cuda", dtype=torch.bfloat16) if self.device.type == "cuda" else None
        for gate in model.gates():
            gate.track_load = True
        self.history: list[dict[str, float]] = []

    def _set_lr(self) -> float:
        lr = self.cfg.lr * cosine_lr(self.step, self.cfg)
        for group in self.optimizer.param_groups:
            group["lr"] = lr
        return lr

    def _forward(self, batch: torch.Tensor):  # type: ignore[no-untyped-def]
        batch = batch.to(self.device, non_blocking=True)
        x, y = batch[:, :-1], batch[:, 1:]
        if self.autocast is None:
            return self.model(x, labels=y, mtp_loss_weight=self.cfg.mtp_loss_weight)
        with self.autocast:
            return self.model(x, labels=y, mtp_loss_weight=self.cfg.mtp_loss_weight)

    def train_step(self, batch: torch.Tensor, stats: bool = True) -> dict[str, float]:
        """One optimizer step on ``batch`` [B, S + 1]; returns losses, grad norm, lr and expert balance.

        With ``stats=False`` nothing is read back from the device (no synchronisation) and ``{}`` is returned.
        """
        self.model.train()
        lr = self._set_lr()
        out = self._forward(batch)
        out.loss.backward()
        max_norm = self.cfg.grad_clip if self.cfg.grad_clip > 0 else float("inf")
        grad_norm = torch.nn.utils.clip_grad_norm_(self.model.parameters(), max_norm)
        self.optimizer.step()
        self.optimizer.zero_grad(set_to_none=True)
        loads = [gate.update_bias(self.cfg.bias_update_speed) for gate in self.model.gates()]
        self.step += 1
        if not stats:
            return {}
        res = {"step": float(self.step), "lr": lr, "loss": out.loss.item(), "main_loss": out.main_loss.item()}
        if out.mtp_loss is not None:
            res["mtp_loss"] = out.mtp_loss.item()
        if out.aux_loss is not None:
            res["aux_loss"] = out.aux_loss.item()
        res["grad_norm"] = float(grad_norm)
        if loads:
            res["max_load_ratio"] = max_load_ratio(loads)
        return res

    @torch.no_grad()
    def evaluate(self, batches: Sequence[torch.Tensor]) -> dict[str, float]:
        """Mean main and MTP validation loss and MTP top-1 accuracy (the draft acceptance proxy)."""
        self.model.eval()
        main = mtp = correct = total = 0.0
        for batch in batches:
            out = self._forward(batch)
            main += out.main_loss.item()
            if out.mtp_loss is not None:
                mtp += out.mtp_loss.item()
                target = batch.to(self.device)[:, 2:]
                pred = out.mtp_logits[0].argmax(-1)
                correct += (pred == target).sum().item()
                total += target.numel()
        n = max(1, len(batches))
        res = {"val_loss": main / n}
        if total:
            res["val_mtp_loss"] = mtp / n
            res["val_mtp_top1"] = correct / total
        return res

    def fit(
        self,
        train: TokenDataset | Iterator[torch.Tensor],
        val: Sequence[torch.Tensor] | None = None,
    ) -> list[dict[str, float]]:
        """Train until ``cfg.steps`` (or ``cfg.max_seconds``); returns the log records."""
        cfg = self.cfg
        batches = None if isinstance(train, TokenDataset) else iter(train)
        if batches is not None:
            for _ in range(self.step):  # resume: skip what the previous run consumed
                next(batches)
        t_start = time.perf_counter()
        t_log, tokens = t_start, 0
        while self.step < cfg.steps:
            if isinstance(train, TokenDataset):
                batch = train.batch(cfg.batch_size, cfg.seq_len, cfg.seed, self.step)
            else:
                assert batches is not None
                try:
                    batch = next(batches)
                except StopIteration:
                    break
            log_now = (self.step + 1) % cfg.log_every == 0 or self.step + 1 >= cfg.steps
            out_of_time = cfg.max_seconds is not None and time.perf_counter() - t_start > cfg.max_seconds
            stats = self.train_step(batch, stats=log_now or out_of_time)
            tokens += batch.shape[0] * (batch.shape[1] - 1)
            if stats:
                if self.device.type == "cuda":
                    torch.cuda.synchronize()
                now = time.perf_counter()
                stats["tok_per_s"] = tokens / (now - t_log)
                stats["elapsed_s"] = now - t_start
                t_log, tokens = now, 0
                if val and cfg.eval_every and self.step % cfg.eval_every == 0:
                    stats.update(self.evaluate(val))
                self.history.append(stats)
                self.log(json.dumps({k: round(v, 5) for k, v in stats.items()}))
            if cfg.out_dir and cfg.checkpoint_every and self.step % cfg.checkpoint_every == 0:
                self.save_checkpoint(cfg.out_dir)
            if out_of_time:
                self.log(f"stopping at step {self.step}: max_seconds reached")
                break
        if val:
            final = self.evaluate(val)
            final["step"] = float(self.step)
            self.history.append(final)
            self.log(json.dumps({k: round(v, 5) for k, v in final.items()}))
        if cfg.out_dir:
            self.save_checkpoint(cfg.out_dir)
        return self.history

    # ------------------------------------------------------------------ checkpoints
    def save_checkpoint(self, out_dir: str | Path) -> None:
        """Weights (Hugging Face layout, incl. correction biases), optimizer state and trainer state."""
        out = Path(out_dir)
        save_pretrained(self.model, out)
        opt = self.optimizer.state_dict()
        tensors = {
            f"state.{idx}.{key}": value.detach().cpu().contiguous()
            for idx, state in opt["state"].items()
            for key, value in state.items()
        }
        save_file(tensors, str(out / "optimizer.safetensors"))
        trainer_state = {"step": self.step, "param_groups": opt["param_groups"], "config": asdict(self.cfg)}
        (out / "trainer_state.json").write_text(json.dumps(trainer_state, indent=2) + "\n", encoding="utf-8")

    def load_checkpoint(self, out_dir: str | Path) -> None:
        """Resume from :meth:`save_checkpoint` output (same architecture and optimizer grouping)."""
        out = Path(out_dir)
        state_file = out / "trainer_state.json"
        if not state_file.is_file():
            raise TrainError(f"train: no trainer_state.json in {out}")
        meta = json.loads(state_file.read_text(encoding="utf-8"))
        load_weights(self.model, weight_files(out))
        flat = load_file(str(out / "optimizer.safetensors"), device=str(self.device))
        state: dict[int, dict[str, torch.Tensor]] = {}
        for name, value in flat.items():
            _, idx, key = name.split(".", 2)
            state.setdefault(int(idx), {})[key] = value
        self.optimizer.load_state_dict({"state": state, "param_groups": meta["param_groups"]})
        self.step = int(meta["step"])


# ---------------------------------------------------------------------- command line
TEXT_SUFFIXES = (".txt", ".md", ".rst", ".py", ".json", ".csv", ".tex", ".html")


def find_text_files(inputs: Sequence[str | Path]) -> list[Path]:
    """Text files named directly or found (recursively, by suffix) in the given folders."""
    found: list[Path] = []
    for item in inputs:
        path = Path(item)
        if path.is_dir():
            found.extend(sorted(p for p in path.rglob("*") if p.is_file() and p.suffix.lower() in TEXT_SUFFIXES))
        elif path.is_file():
            found.append(path)
        else:
            raise TrainError(f"train: {path} does not exist")
    if not found:
        raise TrainError(f"train: no text files ({', '.join(TEXT_SUFFIXES)}) in {', '.join(map(str, inputs))}")
    return found


def _parser() -> argparse.ArgumentParser:
    from lm.config import PRESETS

    p = argparse.ArgumentParser(
        prog="ohmlens train lm", description="Train the DeepSeek-V3-style language backbone on text files."
    )
    p.add_argument("data", nargs="+", help="text files or folders (searched for " + " ".join(TEXT_SUFFIXES) + ")")
    p.add_argument("--out", default="runs/lm", help="checkpoint folder (Hugging Face layout + tokenizer.json)")
    p.add_argument("--preset", default="small", choices=sorted(PRESETS), help="architecture (default: small)")
    p.add_argument("--tokenizer", help="tokenizer.json (or its folder) to use instead of training one")
    p.add_argument("--vocab-size", type=int, default=8192, help="entries of a newly trained tokenizer")
    p.add_argument("--steps", type=int, default=2000)
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--seq-len", type=int, default=512)
    p.add_argument("--lr", type=float, default=2e-3)
    p.add_argument("--warmup-steps", type=int, default=100)
    p.add_argument("--mtp-weight", type=float, default=0.3, help="weight of the MTP loss")
    p.add_argument("--bias-update-speed", type=float, default=1e-3, help="aux-loss-free balancing speed")
    p.add_argument("--max-minutes", type=float, default=0.0, help="stop (and save) after this long (0 = no limit)")
    p.add_argument("--val-fraction", type=float, default=0.01, help="tail of the corpus held out for validation")
    p.add_argument("--checkpoint-every", type=int, default=500)
    p.add_argument("--resume", action="store_true", help="continue from the checkpoint in --out")
    p.add_argument("--seed", type=int, default=0)
    return p


def train_from_args(args: argparse.Namespace, log: Callable[[str], None] = print) -> list[dict[str, float]]:
    """Build or resume the model and tokenizer, train on the text files, save everything to ``args.out``."""
    from lm.config import LMConfig, preset
    from lm.distributed import make_trainer
    from lm.tokenizer import Tokenizer

    out = Path(args.out)
    texts = list(text_files(find_text_files(args.data)))
    if args.resume:
        if not (out / "trainer_state.json").is_file():
            raise TrainError(f"train: nothing to resume in {out}")
        tok = Tokenizer.load(out)
        config = LMConfig.load(out)
    else:
        tok = Tokenizer.load(args.tokenizer) if args.tokenizer else Tokenizer.train(texts, vocab_size=args.vocab_size)
        config = preset(args.preset).replace(
            vocab_size=tok.vocab_size, bos_token_id=tok.eos_id, eos_token_id=tok.eos_id, pad_token_id=tok.pad_id
        )
    data = TokenDataset.from_documents(tok.encode_batch(texts), eos_id=tok.eos_id)
    train, val = data.split(args.val_fraction)
    log(f"corpus: {len(texts)} files, {len(data)} tokens ({len(train)} train / {len(val)} validation)")
    cfg = TrainConfig(
        steps=args.steps,
        batch_size=args.batch_size,
        seq_len=args.seq_len,
        lr=args.lr,
        warmup_steps=args.warmup_steps,
        mtp_loss_weight=args.mtp_weight,
        bias_update_speed=args.bias_update_speed,
        checkpoint_every=args.checkpoint_every,
        out_dir=str(out),
        seed=args.seed,
        max_seconds=args.max_minutes * 60 or None,
    )
    torch.manual_seed(args.seed)
    trainer = make_trainer(LanguageModel(config), cfg, log=log)  # moves the model to this rank's device
    if args.resume:
        trainer.load_checkpoint(out)  # weights, optimizer moments, step
    if int(os.environ.get("RANK", "0")) == 0:
        tok.save(out, model_max_length=config.max_position_embeddings)
    val_batches = val.sequential(cfg.batch_size, cfg.seq_len, 8) if len(val) > cfg.seq_len else None
    return trainer.fit(train, val_batches)


def main(argv: list[str] | None = None) -> int:
    """Command-line entry point; returns the exit code (2 for unusable input, with a one-line message)."""
    from lm.checkpoint import CheckpointError
    from lm.config import LMConfigError
    from lm.distributed import leave_process_group
    from lm.tokenizer import TokenizerError

    args = _parser().parse_args(argv)
    try:
        train_from_args(args)
    except (TrainError, TokenizerError, LMConfigError, CheckpointError) as exc:
        leave_process_group(synchronise=False)
        print(f"error: {exc}", file=sys.stderr)
        return 2
    leave_process_group()
    return 0


if __name__ == "__main__":
    # Run as a script (`torchrun lm/train.py`, `python lm/train.py`): use the importable module, so that its
    # classes are the ones lm.distributed and the isinstance checks in `fit` see, not copies in __main__.
    from lm.train import main as package_main

    sys.exit(package_main())
