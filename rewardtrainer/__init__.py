"""Reward model training and PPO for the preference loop: plain torch + transformers, no Django.

It must import and run on a GPU box that has only torch, transformers and this package;
`labelapp` translates between the database and it. Modules:

- data: PreferencePair, load_jsonl, split_by_prompt, tokenization with left-truncated prompts,
  length-bucketed batches (DataError for unusable data)
- model: RewardModel (backbone + quality head, + length head for ODIN), the Bradley-Terry/ODIN loss
- evaluate: evaluate() and its metric helpers (accuracy, length-matched accuracy, length correlation, ECE)
- checkpoint: atomic training checkpoints, latest_checkpoint, final model folders
- train_rm: TrainConfig, train_reward_model(), and the `python -m rewardtrainer.train_rm` CLI
- devices: CPU/CUDA/MPS selection
"""
