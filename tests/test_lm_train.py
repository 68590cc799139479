"""Training loop: loss goes down, balancing biases move, checkpoints resume exactly (CPU, tiny)."""

from __future__ import annotations

import pytest
import torch

from lm.config import preset
from lm.model import LanguageModel
from lm.train import TokenDataset, TrainConfig, Trainer, TrainError, cosine_lr, pack_documents
from tests.test_lm_model import one_thread  # noqa: F401  (autouse fixture)


def cycle_dataset(n_docs: int = 200, period: int = 12, seed: int = 0) -> TokenDataset:
    """Documents that count upward through a cycle of ``period`` ids from a random phase."""
    gen = torch.Generator().manual_seed(seed)
    docs = []
    for _ in range(n_docs):
        phase = int(torch.randint(0, period, (1,), generator=gen))
        docs.append([3 + (phase + i) % period for i in range(24)])
    return TokenDataset.from_documents(docs, eos_id=2)


def trained_model(steps: int = 60, seed: int = 0) -> LanguageModel:
    """The debug model after a short run on :func:`cycle_dataset` (main and MTP heads learn the cycle)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # also when used from a module-scoped fixture (set up before autouse ones)
    try:
        torch.manual_seed(seed)
        model = LanguageModel(preset("debug"))
        cfg = TrainConfig(steps=steps, batch_size=8, seq_len=24, lr=1e-2, warmup_steps=5, log_every=1000)
        Trainer(model, cfg, log=lambda _: None).fit(cycle_dataset())
    finally:
        torch.set_num_threads(threads)
    return model.eval()


def test_loss_decreases_and_biases_move():
    torch.manual_seed(0)
    model = LanguageModel(preset("debug"))
    data = cycle_dataset()
    train, val = data.split(0.1)
    cfg = TrainConfig(steps=40, batch_size=8, seq_len=24, lr=1e-2, warmup_steps=5, log_every=10, eval_every=40)
    trainer = Trainer(model, cfg, log=lambda _: None)
    before = trainer.evaluate(val.sequential(8, 24, 2))
    history = trainer.fit(train, val.sequential(8, 24, 2))
    after = history[-1]
    assert after["val_loss"] < 0.5 * before["val_loss"]
    assert after["val_mtp_loss"] < 0.5 * before["val_mtp_loss"]
    assert all(g.e_score_correction_bias.abs().sum() > 0 for g in model.gates())
    logged = [h for h in history if "tok_per_s" in h]
    assert len(logged) == 4 and all(h["tok_per_s"] > 0 and "max_load_ratio" in h for h in logged)


def test_resume_reproduces_uninterrupted_run(tmp_path):
    data = cycle_dataset()
    cfg = TrainConfig(steps=6, batch_size=4, seq_len=16, lr=5e-3, warmup_steps=2, log_every=100)

    def fresh() -> Trainer:
        torch.manual_seed(1)
        return Trainer(LanguageModel(preset("debug")), cfg, log=lambda _: None)

    straight = fresh()
    straight.fit(data)
    first = fresh()
    first.cfg = TrainConfig(**{**cfg.__dict__, "steps": 3, "out_dir": str(tmp_path)})
    first.fit(data)
    resumed = fresh()
    resumed.load_checkpoint(tmp_path)
    assert resumed.step == 3
    resumed.fit(data)
    for (name, a), b in zip(straight.model.state_dict().items(), resumed.model.state_dict().values(), strict=True):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6, msg=name)


def test_data_helpers():
    batches = list(pack_documents([[5] * 10, [6] * 10, [7] * 30], batch_size=2, seq_len=8, eos_id=2))
    assert all(b.shape == (2, 9) for b in batches) and len(batches) == 3  # 53 ids, stride 8: 6 windows
    assert torch.equal(batches[0][0, -1], batches[0][1, 0])  # windows overlap by the shifted target
    data = cycle_dataset()
    assert torch.equal(data.batch(4, 16, seed=3, step=7), data.batch(4, 16, seed=3, step=7))
    assert not torch.equal(data.batch(4, 16, seed=3, step=7), data.batch(4, 16, seed=3, step=8))
    cfg = TrainConfig(steps=100, warmup_steps=10, min_lr_ratio=0.1)
    assert cosine_lr(0, cfg) == pytest.approx(0.1) and cosine_lr(9, cfg) == pytest.approx(1.0)
    assert cosine_lr(100, cfg) == pytest.approx(0.1)
    with pytest.raises(TrainError):
        TrainConfig(steps=0).validate()
    with pytest.raises(TrainError):
        TokenDataset(torch.tensor([1, 2, 3])).batch(1, 8, 0, 0)


def test_command_line_trains_saves_and_resumes(tmp_path, capsys):
    from lm.checkpoint import load_pretrained
    from lm.tokenizer import Tokenizer
    from lm.train import main

    corpus = tmp_path / "corpus"
    corpus.mkdir()
    for i in range(6):
        (corpus / f"doc{i}.md").write_text(f"# Regulator {i}\nThe LM317 output is 1.25 V to 37 V; load {i} A.\n" * 20)
    out = tmp_path / "run"
    common = ["--out", str(out), "--preset", "debug", "--vocab-size", "300", "--batch-size", "2", "--seq-len", "16"]
    assert main([str(corpus), *common, "--steps", "3", "--val-fraction", "0.2", "--warmup-steps", "1"]) == 0
    model = load_pretrained(out, dtype=torch.float32)
    tok = Tokenizer.load(out)
    assert model.config.vocab_size == tok.vocab_size and model.config.bos_token_id == tok.eos_id
    assert main([str(corpus), *common, "--steps", "5", "--resume", "--warmup-steps", "1"]) == 0
    assert '"step": 5.0' in capsys.readouterr().out
    assert main([str(tmp_path / "missing"), "--out", str(out)]) == 2
    assert "does not exist" in capsys.readouterr().err
