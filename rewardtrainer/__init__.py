"""Reward model training and PPO for the preference loop: plain torch + transformers, no Django.

It must import and run on a GPU box that has only torch, transformers and this package;
`labelapp` translates between the database and it. Modules:

- data: PreferencePair, load_jsonl, split_by_prompt, tokenization with left-truncated prompts,
  length-bucketed batches (DataError for unusable data)
- model: RewardModel (backbone + quality head; + length head for ODIN, + length coefficient for the
  length-covariate objective; the calibration it applies at use), the Bradley-Terry/ODIN loss
- evaluate: evaluate(), probe_tests() and the metric helpers (balanced accuracy, length correlation, ECE)
- checkpoint: atomic training checkpoints, latest_checkpoint, final model folders
- config: TrainConfig (torch-free; the CLI is generated from its fields)
- calibrate: post-hoc reward-vs-length calibration (LOWESS on log length)
- augment: prompt-mismatch pairs (RRM), MiniLM neighbouring prompts, padded answers for probes
- train_rm: fit_reward_model() as named steps, and the `python -m rewardtrainer.train_rm` CLI
- distributed: DDP helpers (the trainer runs under torchrun)
- devices: CPU/CUDA/MPS selection
"""
