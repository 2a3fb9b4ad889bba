"""Run under `torch.distributed.run` by test_distributed.py: the tiny model trained with dropout on,
stopped after `stop_at` steps when asked (0: trained to the end, or resumed to the end)."""

from __future__ import annotations

import sys

from rewardtrainer.config import TrainConfig
from rewardtrainer.train_rm import fit_reward_model
from tests.rewardtrainer.synthetic import keyword_pairs


def main(backbone: str, out: str, stop_at: int) -> None:
    pairs = keyword_pairs(56, seed=1)
    config = TrainConfig(
        backbone=backbone, batch_size=7, lr=2e-3, max_length=48, max_steps=8, dropout=True, device="cpu",
        eval_every=0, checkpoint_every=0, early_stopping_patience=0, log_every=1, augment="none",
        augment_padding=0.0, calibrate=False, eval_probe_answers=0, objective="plain", num_threads=1,
    )  # fmt: skip
    asked = iter(range(1, 1_000_000))
    stop = (lambda: next(asked) == stop_at) if stop_at else None
    fit_reward_model(pairs[:48], config, out, val_pairs=pairs[48:], should_stop=stop)


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2], int(sys.argv[3]))
