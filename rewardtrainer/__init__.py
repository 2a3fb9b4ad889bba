"""Reward model training and PPO for the preference loop: plain torch + transformers, no Django.

It must import and run on a GPU box that has only torch, transformers and this package;
`labelapp` translates between the database and it. Modules: devices (CPU/CUDA/MPS selection).
"""
