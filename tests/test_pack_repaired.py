"""Repaired drawings for the detector's training: the pack, its resumption, and its place in the training stream."""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pytest

import vision.train_detector as td
from pipelines.pack_repaired import STORED_SIDE, main, pack_repaired
from vision.detect import to_gray
from vision.synth.damage import apply_damage_by_kind
from vision.synth.render import render_sample

SEEDS = (110_000_000, 110_000_001)


@pytest.fixture(scope="module")
def pack(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("repaired")
    assert pack_repaired(root, SEEDS[0], len(SEEDS)) == len(SEEDS)
    return root


def test_a_packed_drawing_is_the_repaired_damaged_drawing_with_its_truth_on_it(pack: Path) -> None:
    for seed in SEEDS:
        stored = cv2.imread(str(pack / f"{seed}.png"), cv2.IMREAD_GRAYSCALE)
        truth = json.loads((pack / f"{seed}.json").read_text(encoding="utf-8"))
        sample = render_sample(seed)
        assert max(stored.shape) == min(STORED_SIDE, max(sample.image.shape[:2]))
        assert truth["size"] == [stored.shape[1], stored.shape[0]]
        k = stored.shape[1] / sample.image.shape[1]
        for mine, theirs in zip(truth["components"], sample.truth["components"], strict=True):
            assert mine["bbox"] == pytest.approx([v * k for v in theirs["bbox"]], abs=0.5)
        # Not the intact drawing, nor the damaged one: the repair changed what the damage did.
        damaged = to_gray(apply_damage_by_kind(sample.image, np.random.default_rng(seed))[0])
        size = (stored.shape[1], stored.shape[0])
        intact_small = cv2.resize(to_gray(sample.image), size, interpolation=cv2.INTER_AREA)
        damaged_small = cv2.resize(damaged, size, interpolation=cv2.INTER_AREA)
        assert np.abs(intact_small - stored.astype(float)).mean() < np.abs(damaged_small - stored.astype(float)).mean()
        ink = stored < 128
        for comp in truth["components"]:
            x0, y0, x1, y1 = (int(round(v)) for v in comp["bbox"])
            assert ink[y0:y1, x0:x1].mean() > 2 * ink.mean(), comp["type"]


def test_packing_again_resumes_and_stores_only_what_is_missing(pack: Path) -> None:
    before = {p.name: p.stat().st_mtime_ns for p in pack.iterdir()}
    assert pack_repaired(pack, SEEDS[0], len(SEEDS)) == 0
    assert {p.name: p.stat().st_mtime_ns for p in pack.iterdir()} == before


def test_every_nth_training_sample_is_a_repaired_drawing(pack: Path) -> None:
    repaired = td.RepairedDataset(pack, 256, 1)
    synth = td.SynthDataset(21, 12, 256, p_scan=0.0, p_damage=0.0)
    mixed = td.Mixed(synth, None, 6, repaired, 3)
    for i in (2, 5):
        np.testing.assert_array_equal(mixed[i]["image"], repaired[i // 3]["image"])
    np.testing.assert_array_equal(mixed[4]["image"], synth[4]["image"])
    # Placement is seeded by the item: the same pack drawing lands elsewhere as another item.
    assert not np.array_equal(repaired[0]["image"], repaired[len(repaired)]["image"])


def test_train_takes_a_repaired_pack_and_refuses_an_empty_one(pack: Path, tmp_path: Path) -> None:
    argv = "--backbone lcnet_050 --head-channels 16 --side 128 --infer-side 128 --batch 2 --workers 0 --steps 2"
    argv += " --log-every 1 --cpu --warmup 1 --repaired-period 2"
    td.main(["train", "--out", str(tmp_path / "run"), "--repaired", str(pack), *argv.split()])
    summary = json.loads((tmp_path / "run" / "train_summary.json").read_text(encoding="utf-8"))
    assert summary["steps"] == 2 and summary["options"]["repaired"] == str(pack)
    (tmp_path / "empty").mkdir()
    with pytest.raises(SystemExit):
        td.main(["train", "--out", str(tmp_path / "bad"), "--repaired", str(tmp_path / "empty"), *argv.split()])


def test_bad_pack_options_are_one_line_errors(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "a_file").write_text("x", encoding="utf-8")
    for argv in (["--out", str(tmp_path / "a_file")], ["--out", str(tmp_path / "p"), "--count", "0"]):
        with pytest.raises(SystemExit) as exc:
            main(argv)
        assert exc.value.code == 2 and "error:" in capsys.readouterr().err
    assert not (tmp_path / "p").exists()
