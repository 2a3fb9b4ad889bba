"""What finished runs leave on disk (services/artifacts.py): checkpoints go once a run cannot resume."""

from __future__ import annotations

from pathlib import Path

import pytest

from labelapp.models import PolicyVersion, TrainingRun
from labelapp.services import policy
from labelapp.services.artifacts import finished_runs_prune

pytestmark = pytest.mark.django_db


def _files(root: Path, *names: str) -> None:
    for name in names:
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_bytes(b"x" * 1000)


def _run(tmp_path: Path, name: str, status: str, kind: str = "ppo") -> TrainingRun:
    root = tmp_path / name
    _files(root, "checkpoints/ckpt-000001/model.safetensors", "checkpoints/ckpt-000002/optimizer.pt",
           "attempt-1/policy/model.safetensors")  # fmt: skip
    return TrainingRun.objects.create(kind=kind, status=status, config={}, artifact_path=str(root))


def test_finished_runs_lose_their_checkpoints_and_keep_their_versions_files(tmp_path):
    # a PPO round kept 3.2 GB for good (two checkpoints with AdamW's state, besides its policy)
    v0 = policy.policy_base()
    done = _run(tmp_path, "policy-run-1", "succeeded")
    PolicyVersion.objects.create(
        number=1,
        kind="ppo",
        parent=v0,
        run=done,
        artifact_path=str(tmp_path / "policy-run-1/attempt-1/policy"),
    )
    _run(tmp_path, "policy-run-2", "failed")  # recorded nothing: its attempt folders go too
    _run(tmp_path, "policy-run-3", "running")  # may resume from them
    rm = tmp_path / "reward-run-4"
    _files(rm, "main/checkpoints/ckpt-000003/model.pt", "main/attempt-1/model.safetensors",
           "baseline/checkpoints-member-1/ckpt-000001/model.pt")  # fmt: skip
    TrainingRun.objects.create(kind="reward_model", status="cancelled", config={}, artifact_path=str(rm))

    assert finished_runs_prune() == 2 * 2000 + 1000 + 2000 + 1000
    assert not (tmp_path / "policy-run-1/checkpoints").exists()
    assert (tmp_path / "policy-run-1/attempt-1/policy/model.safetensors").exists()
    assert not (tmp_path / "policy-run-2/checkpoints").exists()
    assert not (tmp_path / "policy-run-2/attempt-1").exists()
    assert (tmp_path / "policy-run-3/checkpoints/ckpt-000002/optimizer.pt").exists()
    assert not (rm / "main/checkpoints").exists() and not (rm / "baseline/checkpoints-member-1").exists()
    assert finished_runs_prune() == 0  # nothing left to free; a folder on another machine is skipped


def test_a_version_that_reuses_another_runs_files_keeps_them(tmp_path):
    # a best-of-n version samples from its parent's weights: its artifact_path is the parent's folder
    v0 = policy.policy_base()
    failed = _run(tmp_path, "policy-run-1", "failed")
    PolicyVersion.objects.create(
        number=1, kind="best_of_n", parent=v0, artifact_path=str(tmp_path / "policy-run-1/attempt-1/policy")
    )
    finished_runs_prune()
    assert (tmp_path / "policy-run-1/attempt-1/policy/model.safetensors").exists()
    assert not (Path(failed.artifact_path) / "checkpoints").exists()


def test_one_runs_trouble_does_not_stop_the_others_and_pruned_folders_are_not_walked_again(
    tmp_path, monkeypatch
):
    # a file vanishing while sized (two machines pruning one ARTIFACTS_DIR) stopped the whole pass
    from labelapp.services import artifacts

    first = _run(tmp_path, "policy-run-1", "failed")
    second = _run(tmp_path, "policy-run-2", "failed")
    _files(Path(second.artifact_path), "pairs.jsonl")  # a killed torchrun supervisor's copy of the texts
    real = artifacts._prunable

    def flaky(root, kept):
        if root == Path(first.artifact_path):
            raise FileNotFoundError("gone meanwhile")
        return real(root, kept)

    monkeypatch.setattr(artifacts, "_prunable", flaky)
    assert finished_runs_prune() == 2000 + 1000 + 1000
    assert not (Path(second.artifact_path) / "pairs.jsonl").exists()
    assert (Path(first.artifact_path) / "checkpoints").exists()  # tried again next time
    monkeypatch.setattr(artifacts, "_prunable", real)
    assert finished_runs_prune() == 3000
    walked = []
    monkeypatch.setattr(artifacts, "_prunable", lambda root, kept: walked.append(root) or [])
    finished_runs_prune()
    assert walked == []  # both marked pruned
