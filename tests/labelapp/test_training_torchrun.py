"""The gpu worker launching a run under torchrun (RM_NPROC > 1): here 2 CPU processes with gloo.

Progress comes back through the run's progress file into the run row; the model and metrics written
by rank 0 become a version like any other.
"""

from __future__ import annotations

import pytest

from labelapp.models import RewardModelVersion, TrainingRun
from labelapp.services import training

from .test_training import _rate_many

pytest.importorskip("torch")


@pytest.mark.django_db
def test_a_run_trains_under_torchrun_with_two_processes(
    settings, tiny_backbone, tmp_path, guideline, make_user, monkeypatch
):
    monkeypatch.setattr(training, "_enqueue", lambda run_id: None)
    settings.TRAINING = {
        **settings.TRAINING,
        "BACKBONE": tiny_backbone,
        "MAX_LENGTH": 48,
        "BATCH_SIZE": 4,
        "EPOCHS": 1,
        "EVAL_EVERY": 0,
        "CHECKPOINT_EVERY": 0,
        "AUGMENT": "none",
        "DEVICE": "cpu",
        "NPROC": 2,
        "EVAL_SET_PERCENT": 0,
        "EVAL_SET_MIN_PAIRS": 0,
    }
    settings.ARTIFACTS_DIR = tmp_path / "artifacts"
    _rate_many(make_user, 12)
    run = training.training_run_request(trigger="manual", force=True)
    assert training.training_run_execute(run_id=run.pk, worker="w1") == TrainingRun.Status.SUCCEEDED, (
        TrainingRun.objects.get(pk=run.pk).error
    )
    run.refresh_from_db()
    assert run.progress == 1.0 and run.metrics["n_pairs"] >= 1
    assert run.progress_detail.get("event") == "done"  # read back from the torchrun progress file
    version = RewardModelVersion.objects.get(run=run)
    assert version.metrics["pairs_train"] + version.metrics["pairs_val"] == 12
    assert (
        version.is_active
        and (tmp_path / "artifacts" / f"reward-run-{run.pk}" / "main" / "torchrun.log").exists()
    )
