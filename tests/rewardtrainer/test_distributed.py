"""DDP: two CPU processes (gloo) under torchrun follow the same loss curve as one process with the same
global batch; the helpers split a batch and rescale the loss so the averaged gradient is the global one."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from rewardtrainer import distributed

from .synthetic import keyword_pairs

ROOT = Path(__file__).resolve().parents[2]


def test_shards_cover_a_batch_and_the_scaled_losses_average_to_the_global_mean():
    world = [distributed.Dist(rank=r, world_size=3) for r in range(3)]
    batch = list(range(10))
    shards = [distributed.shard(batch, d) for d in world]
    assert sorted(i for s in shards for i in s) == batch and [len(s) for s in shards] == [4, 3, 3]
    losses = {i: float(i * i) for i in batch}  # per-pair losses
    local_means = [sum(losses[i] for i in s) / len(s) for s in shards]
    # DDP averages over ranks: mean_r(scale_r * local_mean_r) must be the global mean
    scaled = [
        m * distributed.loss_scale(len(s), len(batch), d)
        for m, s, d in zip(local_means, shards, world, strict=True)
    ]
    assert sum(scaled) / 3 == pytest.approx(sum(losses.values()) / len(batch))
    single = distributed.Dist()
    assert distributed.shard(batch, single) == batch and distributed.loss_scale(5, 10, single) == 1.0


def _run(tmp_path: Path, name: str, backbone: str, nproc: int, batch_size: int = 8) -> list[float]:
    data, val = tmp_path / "train.jsonl", tmp_path / "val.jsonl"
    pairs = keyword_pairs(56, seed=1)
    if not data.exists():
        rows = [json.dumps(vars(p)) for p in pairs]
        data.write_text("\n".join(rows[:48]) + "\n")
        val.write_text("\n".join(rows[48:]) + "\n")
    progress = tmp_path / f"{name}.jsonl"
    args = [
        "-m", "rewardtrainer.train_rm", "--data", str(data), "--val-data", str(val),
        "--out", str(tmp_path / name), "--progress-file", str(progress), "--backbone", backbone,
        "--objective", "plain", "--augment", "none", "--no-calibrate", "--eval-probe-answers", "0",
        "--batch-size", str(batch_size), "--max-length", "48", "--max-steps", "6", "--lr", "2e-3",
        "--log-every", "1", "--eval-every", "0", "--checkpoint-every", "0", "--num-threads", "1",
        "--device", "cpu",
    ]  # fmt: skip
    if nproc > 1:
        cmd = [
            sys.executable,
            "-m",
            "torch.distributed.run",
            "--standalone",
            f"--nproc_per_node={nproc}",
            *args,
        ]
    else:
        cmd = [sys.executable, *args]
    env = dict(os.environ, PYTHONPATH=str(ROOT), OMP_NUM_THREADS="1")
    done = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=240)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-3000:]
    rows = [json.loads(line) for line in progress.read_text().splitlines()]
    return [r["train_loss"] for r in rows if r.get("event") == "log"]


def test_two_gloo_processes_follow_the_loss_curve_of_one_process(tmp_path, tiny_bert):
    one = _run(tmp_path, "single", tiny_bert, 1)
    two = _run(tmp_path, "ddp", tiny_bert, 2)
    assert len(one) == len(two) == 6
    assert one[0] != one[-1]  # it learned something: the curves are not flat
    assert two == pytest.approx(one, rel=1e-3, abs=1e-4)
    assert (tmp_path / "ddp" / "model" / "reward_config.json").is_file()  # rank 0 wrote the model


def test_the_logged_loss_is_the_global_batch_mean_when_ranks_hold_unequal_shards(tmp_path, tiny_bert):
    # 7 pairs a batch on 2 ranks: shards of 4 and 3. The log averaged the two ranks' means as equals,
    # so the logged loss was not the batch mean that one process logs (the gradients always were)
    one = _run(tmp_path, "single", tiny_bert, 1, batch_size=7)
    two = _run(tmp_path, "ddp", tiny_bert, 2, batch_size=7)
    assert two == pytest.approx(one, rel=1e-3, abs=1e-4)


def _ddp_resume(backbone: str, out: Path, stop_at: int) -> None:
    cmd = [
        sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
        str(ROOT / "tests" / "rewardtrainer" / "ddp_resume.py"), backbone, str(out), str(stop_at),
    ]  # fmt: skip
    env = dict(os.environ, PYTHONPATH=str(ROOT), OMP_NUM_THREADS="1")
    done = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=240)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-3000:]


def test_a_ddp_run_with_dropout_resumed_ends_with_the_weights_of_one_never_stopped(tmp_path, tiny_bert):
    # only rank 0 wrote the checkpoint, with its own RNG states, and every rank restored them: rank 1
    # drew rank 0's dropout masks after the resume (weights 0.01 apart after 8 steps)
    from safetensors.torch import load_file

    _ddp_resume(tiny_bert, tmp_path / "full", 0)
    _ddp_resume(tiny_bert, tmp_path / "stopped", 3)
    assert not (tmp_path / "stopped" / "model").exists()
    _ddp_resume(tiny_bert, tmp_path / "stopped", 0)
    full, resumed = (load_file(tmp_path / d / "model" / "model.safetensors") for d in ("full", "stopped"))
    assert max(float((full[k] - resumed[k]).abs().max()) for k in full) == 0.0
