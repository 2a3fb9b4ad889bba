"""Reward model: a transformers backbone, pooling, and one (Bradley-Terry) or two (ODIN) linear heads.

Papers followed:
- Bradley-Terry reward modelling as in InstructGPT (Ouyang et al. 2022) and TRL's RewardTrainer:
  loss = -logsigmoid(r_chosen - r_rejected - margin), logging accuracy, margin and reward statistics.
- ODIN (Chen et al. 2024, "ODIN: Disentangled Reward Mitigates Hacking in RLHF"): a quality head and a
  length head share the backbone; the ranking loss is on their sum, the length head is pushed to
  correlate with answer length, the quality head not to, and the two head weight vectors to be
  orthogonal. Only the quality head is used downstream (`reward()`), so RL cannot buy reward with length.

- Length covariate (R-DPO, Park et al. 2024, arXiv 2403.19159; LC-AlpacaEval, Dubois et al. 2024,
  arXiv 2404.04475; Chatbot Arena's style control): P(chosen) = sigmoid(r_c - r_r + beta * log(len_c /
  len_r)) with beta learned. The length term explains the raters' taste for length so that the reward
  need not absorb it; beta is dropped at use.
- Post-hoc calibration (calibrate.py, arXiv 2409.17407): the deployed reward subtracts a smooth fit of
  reward on log answer length measured on training answers, so it is flat in length.
- Relevance head (our variant of RRM, Liu et al. 2024, arXiv 2409.13156): RRM adds "an answer to this
  prompt beats an answer to another prompt" pairs to the Bradley-Terry data; on a small backbone those
  easy pairs crowd out the human signal (README). With `relevance=True` they train a separate head
  instead, a classifier "does this answer address this prompt" (human answers and the on-prompt side
  = 1, the other prompt's answer = 0, class-balanced cross-entropy), and the deployed reward adds
  log sigmoid(relevance): about 0 for an answer to this prompt, strongly negative for one that is not.
- Relevance gate (relevance.py): the same deployed term without training, from the shipped MiniLM's
  cosine of prompt and answer; fitted after training like the calibration, applied by `score()`.

Usage:

    model = RewardModel.from_backbone("path/to/minilm", objective="length")
    r_quality, r_length = model(input_ids, attention_mask)         # each (B,)
    model.save_pretrained("runs/rm1/model", tokenizer=tokenizer)
    model = RewardModel.from_pretrained("runs/rm1/model")
    scores = model.score(tokenizer, prompts, answers)               # deployed reward, (N,)
"""

from __future__ import annotations

import contextlib
import json
import logging
import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from . import varlen

log = logging.getLogger(__name__)

REWARD_CONFIG = "reward_config.json"
HEADS_FILE = "reward_heads.safetensors"
# Model types whose last token sees the whole sequence (causal attention): pool the last real token.
DECODER_MODEL_TYPES = frozenset(
    "gpt2 gptj gpt_neo gpt_neox llama mistral mixtral qwen2 qwen3 qwen2_moe gemma gemma2 gemma3 gemma3_text"
    " phi phi3 opt bloom falcon mpt olmo olmo2 smollm3 starcoder2 stablelm codegen granite cohere".split()
)


@dataclass
class LossWeights:
    """Weights of the ODIN terms added to the Bradley-Terry loss (ignored when odin=False)."""

    corr_quality: float = 1.0
    """weight of |Pearson(r_quality, answer length)| over the 2B answers of a batch"""
    corr_length: float = 1.0
    """weight of -Pearson(r_length, answer length): the length head should carry length"""
    ortho: float = 1.0
    """weight of |w_quality . w_length|: the heads read different directions of the pooled state"""
    corr_mode: str = "global"
    """'batch': ODIN's in-batch Pearson; 'global': `global_correlation`, which sees across batches"""
    reward_corr: float = 0.0
    """plain / length objectives: weight of |correlation(reward, answer length)| (corr_mode's measure)"""
    relevance: float = 1.0
    """weight of the relevance head's class-balanced cross-entropy (models with a relevance head)"""


def resolve_pooling(config, pooling: str = "auto") -> str:
    """'mean' for encoders, 'last' (last non-pad token) for decoders; explicit values pass through."""
    if pooling in ("mean", "last"):
        return pooling
    if pooling != "auto":
        raise ValueError(f"pooling must be 'auto', 'mean' or 'last', got {pooling!r}")
    return "last" if is_causal_decoder(config) else "mean"


def context_length(config) -> int | None:
    """The most positions a model (its config) was built for; None when the config does not say."""
    text_config = config.get_text_config()
    for name in ("max_position_embeddings", "n_positions", "max_sequence_length"):
        value = getattr(text_config, name, None)
        if isinstance(value, int) and value > 0:
            return value
    return None


def is_causal_decoder(config) -> bool:
    """Whether a backbone config is a causal (decoder-only) language model."""
    archs = getattr(config, "architectures", None) or []
    return (
        bool(getattr(config, "is_decoder", False))
        or getattr(config, "model_type", "") in DECODER_MODEL_TYPES
        or any(a.endswith(("ForCausalLM", "LMHeadModel")) for a in archs)
    )


def disable_dropout(module: nn.Module) -> None:
    """Dropout off, in modules and in the config (Llama-style attention reads `attention_dropout` from
    it, with no Dropout module). Reward models train better and faster without it (TRL disables it
    too; on CPU attention dropout also forces SDPA onto its slow path), and PPO needs it off so that
    the probability ratio is exactly 1 on the first minibatch (N implementation details)."""
    for m in module.modules():
        if isinstance(m, nn.Dropout):
            m.p = 0.0
        # Llama, Qwen2, Phi-3 copy the config's rate into each attention module when it is built: a
        # config edited afterwards left it on in train mode (gradient checkpointing), and the first
        # minibatch's ratio was not 1
        _zero_rates(m)
    _zero_rates(getattr(module, "config", None))


_DROPOUT_RATES = ("attention_dropout", "hidden_dropout", "dropout", "resid_pdrop", "attn_pdrop", "embd_pdrop")


def _zero_rates(obj) -> None:
    for attr in _DROPOUT_RATES:
        value = getattr(obj, attr, None)
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            setattr(obj, attr, 0.0)


def pearson(x: torch.Tensor, y: torch.Tensor, eps: float = 1e-8) -> torch.Tensor:
    """Differentiable Pearson correlation of two (N,) vectors; 0 when either is constant."""
    xc, yc = x - x.mean(), y - y.mean()
    return (xc * yc).sum() / (xc.norm() * yc.norm() + eps)


def global_correlation(
    r: torch.Tensor, length: torch.Tensor, length_mean: float, eps: float = 1e-8
) -> torch.Tensor:
    """Cosine between r and (length - mu_L), with mu_L the mean answer length of the whole training set.

    ODIN's in-batch Pearson centres both sides on the batch, so it cannot see correlation *between*
    batches; with length-bucketed batches (each spanning a narrow length range) a reward that rises
    from bucket to bucket would go unpunished. Centring length on the training-set mean instead, and
    leaving r uncentred, makes a batch of short answers (all below mu_L) pay for a non-zero mean reward,
    so driving this to zero also levels the mean reward across length buckets. Like Pearson it is
    bounded in [-1, 1] and invariant to the scale of r, so maximising it for the length head cannot
    blow that head up.
    """
    z = length - length_mean  # (N,)
    return (r * z).sum() / (r.norm() * z.norm() + eps)


def bradley_terry_loss(
    r_chosen: torch.Tensor, r_rejected: torch.Tensor, margin: torch.Tensor | None = None, weight=None
) -> torch.Tensor:
    """Mean over the batch of weight * -logsigmoid(r_chosen - r_rejected - margin); inputs (B,)."""
    diff = r_chosen - r_rejected  # (B,)
    if margin is not None:
        diff = diff - margin
    loss = -F.logsigmoid(diff)  # (B,)
    if weight is not None:
        loss = loss * weight
    return loss.mean()


class RewardModel(nn.Module):
    """Backbone + pooling + quality head (+ length head for 'odin', + length coefficient for 'length')."""

    def __init__(
        self,
        backbone: nn.Module,
        *,
        objective: str = "length",
        pooling: str = "auto",
        source: str = "",
        odin: bool | None = None,
        relevance: bool = False,
    ):
        super().__init__()
        if odin is not None:  # the pre-objective spelling
            objective = "odin" if odin else "plain"
        if objective not in ("length", "plain", "odin"):
            raise ValueError(f"objective must be 'length', 'plain' or 'odin', got {objective!r}")
        self.backbone = backbone
        # A reward model never generates: a decoder would otherwise build and fill a KV cache on every
        # training step (memory for nothing, and a different cache state per layer makes torch.compile
        # recompile each compiled block).
        if hasattr(backbone.config, "use_cache"):
            backbone.config.use_cache = False
        self.objective = objective
        self.odin = objective == "odin"
        # The learned length coefficient (training only; dropped at use). A scalar in log-length units.
        self.length_beta = nn.Parameter(torch.zeros(())) if objective == "length" else None
        # LengthCalibration knots (calibrate.py), set after training; subtracted from the deployed reward.
        self.calibration: dict | None = None
        # Relevance gate fit (relevance.py: the cosine or the PMI gate, as a dict), set after training;
        # added to the deployed reward.
        self.relevance_gate: dict | None = None
        self.pooling = resolve_pooling(backbone.config, pooling)
        self.causal = is_causal_decoder(backbone.config)
        self.source = source
        self.max_length: int | None = None  # set by training, saved, used by score()
        if getattr(backbone, "pooler", None) is not None:
            # BERT's pooler is unused (we pool ourselves): dropping it saves compute and leaves no
            # parameter without a gradient, which DDP would otherwise wait for.
            backbone.pooler = None
        hidden = int(backbone.config.get_text_config().hidden_size)
        self.hidden_size = hidden
        self.quality_head = nn.Linear(hidden, 1)
        self.length_head = nn.Linear(hidden, 1) if self.odin else None
        self.relevance_head = nn.Linear(hidden, 1) if relevance else None
        for head in (self.quality_head, self.length_head, self.relevance_head):
            if head is not None:  # small init, as the value/reward heads in "N implementation details"
                nn.init.normal_(head.weight, std=1.0 / math.sqrt(hidden + 1))
                nn.init.zeros_(head.bias)
        self.uses_token_types = int(getattr(backbone.config, "type_vocab_size", 0) or 0) > 1

    # --- construction -----------------------------------------------------------------------------------

    @classmethod
    def from_backbone(
        cls,
        name_or_path: str,
        *,
        objective: str = "length",
        pooling: str = "auto",
        dropout: bool = False,
        odin: bool | None = None,
        relevance: bool = False,
        attn_implementation: str | None = "sdpa",
        **kwargs,
    ) -> RewardModel:
        """Load a transformers base model (`AutoModel`, encoder or decoder) and add fresh heads."""
        from transformers import AutoModel

        if attn_implementation:
            kwargs["attn_implementation"] = attn_implementation
        try:
            backbone = AutoModel.from_pretrained(name_or_path, dtype=torch.float32, **kwargs)
        except (ValueError, ImportError) as e:  # an architecture without that attention kernel
            if "attn_implementation" not in kwargs:
                raise
            log.warning("attention %r unavailable (%s); using the model's default", attn_implementation, e)
            kwargs.pop("attn_implementation")
            backbone = AutoModel.from_pretrained(name_or_path, dtype=torch.float32, **kwargs)
        if not dropout:
            disable_dropout(backbone)
        return cls(
            backbone,
            objective=objective,
            pooling=pooling,
            source=str(name_or_path),
            odin=odin,
            relevance=relevance,
        )

    @classmethod
    def from_pretrained(
        cls, directory: str | Path, *, device: str | torch.device | None = None
    ) -> RewardModel:
        """Load a folder written by `save_pretrained` (backbone, heads, reward_config.json)."""
        from safetensors.torch import load_file
        from transformers import AutoModel

        directory = Path(directory)
        cfg = json.loads((directory / REWARD_CONFIG).read_text())
        try:  # BERT-style encoders: the pooler is dropped at training (see __init__), so none is saved
            backbone = AutoModel.from_pretrained(directory, dtype=torch.float32, add_pooling_layer=False)
        except TypeError:
            backbone = AutoModel.from_pretrained(directory, dtype=torch.float32)
        disable_dropout(backbone)
        objective = cfg.get("objective") or ("odin" if cfg.get("odin") else "plain")
        model = cls(
            backbone,
            objective=objective,
            pooling=cfg["pooling"],
            source=cfg.get("backbone_source", ""),
            relevance=bool(cfg.get("relevance")),
        )
        model.max_length = cfg.get("max_length")
        model.calibration = cfg.get("calibration")
        model.relevance_gate = cfg.get("relevance_gate")
        if model.length_beta is not None:
            model.length_beta.data.fill_(float(cfg.get("length_beta", 0.0)))
        heads = load_file(directory / HEADS_FILE)
        model.quality_head.load_state_dict({"weight": heads["quality.weight"], "bias": heads["quality.bias"]})
        for name, head in (("length", model.length_head), ("relevance", model.relevance_head)):
            if head is not None:
                head.load_state_dict({"weight": heads[f"{name}.weight"], "bias": heads[f"{name}.bias"]})
        model.eval()
        return model.to(device) if device is not None else model

    def save_pretrained(self, directory: str | Path, tokenizer=None) -> None:
        """Backbone via transformers (safetensors), heads as safetensors, tokenizer, reward_config.json."""
        from safetensors.torch import save_file

        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        self.backbone.save_pretrained(directory)  # safetensors (the default since transformers 4.35)
        heads = {
            "quality.weight": self.quality_head.weight,
            "quality.bias": self.quality_head.bias,
        }
        for name, head in (("length", self.length_head), ("relevance", self.relevance_head)):
            if head is not None:
                heads |= {f"{name}.weight": head.weight, f"{name}.bias": head.bias}
        save_file({k: v.detach().cpu().contiguous() for k, v in heads.items()}, directory / HEADS_FILE)
        if tokenizer is not None:
            tokenizer.save_pretrained(directory)
        config = {
            "format": "rewardtrainer/1",
            "objective": self.objective,
            "odin": self.odin,
            "pooling": self.pooling,
            "length_beta": float(self.length_beta.detach()) if self.length_beta is not None else None,
            "calibration": self.calibration,
            "relevance_gate": self.relevance_gate,
            "hidden_size": self.hidden_size,
            "heads": ["quality"]
            + (["length"] if self.odin else [])
            + (["relevance"] if self.relevance_head else []),
            "relevance": self.relevance_head is not None,
            "backbone_source": self.source,
            "max_length": self.max_length,
        }
        (directory / REWARD_CONFIG).write_text(json.dumps(config, indent=2) + "\n")

    @contextlib.contextmanager
    def raw(self):
        """Inside the block the reward is the head's own: no length calibration, no relevance gate
        (both back afterwards, also after an error). For before/after comparisons of the fits."""
        fits = self.calibration, self.relevance_gate
        self.calibration = self.relevance_gate = None
        try:
            yield self
        finally:
            self.calibration, self.relevance_gate = fits

    # --- forward ----------------------------------------------------------------------------------------

    def pool(
        self, hidden: torch.Tensor, attention_mask: torch.Tensor | None, ends: torch.Tensor | None = None
    ) -> torch.Tensor:
        """(B, T, H) -> (B, H): mean over real tokens, or the last real token (right padding). Packed
        (hidden (1, L, H), `ends` (B,) each row's last token): the hidden state at each end."""
        if ends is not None:
            return hidden[0, ends]
        if self.pooling == "last":
            last = attention_mask.sum(dim=1) - 1  # (B,)
            return hidden[torch.arange(hidden.shape[0], device=hidden.device), last]
        mask = attention_mask.unsqueeze(-1).to(hidden.dtype)  # (B, T, 1)
        return (hidden * mask).sum(dim=1) / mask.sum(dim=1).clamp(min=1.0)

    def forward(
        self,
        input_ids: torch.Tensor,
        attention_mask: torch.Tensor,
        token_type_ids: torch.Tensor | None = None,
        return_relevance: bool = False,
        position_ids: torch.Tensor | None = None,
        ends: torch.Tensor | None = None,
    ) -> tuple[torch.Tensor, ...]:
        """input_ids, attention_mask: (B, T) right-padded. Returns (r_quality, r_length), each (B,);
        r_length is zeros for a plain Bradley-Terry model. With a relevance head r_quality includes
        log sigmoid(relevance) (the reward before calibration), and `return_relevance` adds the raw
        quality head and the relevance logit: (r_quality, r_length, quality head, relevance logit).
        Packed rows (data.collate_packed, causal last-token decoders only): input_ids and position_ids
        (1, L), `ends` (B,), attention_mask None or a FlexAttention BlockMask (packing.py); the result
        is the same as for the rows padded."""
        kwargs = (
            {"token_type_ids": token_type_ids} if token_type_ids is not None and self.uses_token_types else {}
        )
        # Padding is on the right, and a causal decoder never lets a real token see what comes after it:
        # the padding mask changes nothing that pooling reads. Without it SDPA runs the causal flash
        # kernel instead of a masked one (and builds no (B, 1, T, T) mask).
        backbone_mask = None if self.causal else attention_mask
        if ends is not None:
            if not (self.causal and self.pooling == "last"):
                raise ValueError("packed rows need a causal decoder with last-token pooling")
            kwargs["position_ids"] = position_ids
            # None: transformers derives the mask from the restarting positions; or the FlexAttention
            # BlockMask of packing.document_block_mask
            backbone_mask = attention_mask
            kwargs.update(varlen.backbone_kwargs())  # the varlen kernel's row offsets, when it runs
        hidden = self.backbone(input_ids=input_ids, attention_mask=backbone_mask, **kwargs).last_hidden_state
        pooled = self.pool(hidden, attention_mask, ends).float()  # (B, H)
        # The heads in fp32 under autocast too: autocast casts a Linear back to bf16 whatever its input,
        # and a bf16 reward (then beta * log(length) beside it, 0.125 apart near 17) rounded a 3% length
        # difference's logit from 0.10 to 0.
        with torch.autocast(pooled.device.type, enabled=False):
            quality = self.quality_head(pooled).squeeze(-1)  # (B,)
            r_length = (
                self.length_head(pooled).squeeze(-1)
                if self.length_head is not None
                else torch.zeros_like(quality)
            )
            relevance = self.relevance_head(pooled).squeeze(-1) if self.relevance_head is not None else None
        if relevance is None:
            return (
                (quality, r_length, quality, torch.zeros_like(quality))
                if return_relevance
                else (quality, r_length)
            )
        # relevance: (B,) logit of "answers this prompt"
        r_quality = quality + F.logsigmoid(relevance)
        return (r_quality, r_length, quality, relevance) if return_relevance else (r_quality, r_length)

    def reward(self, input_ids, attention_mask, token_type_ids=None, *, answer_chars=None) -> torch.Tensor:
        """The reward used downstream (PPO, best-of-n), (B,): the quality head only (the length head and
        the length coefficient are dropped); with `answer_chars` (B,) the length calibration is
        subtracted too, which is what `score()` does."""
        r = self(input_ids, attention_mask, token_type_ids)[0]
        if answer_chars is not None and self.calibration:
            r = r - torch.as_tensor(self.length_offset(answer_chars), dtype=r.dtype, device=r.device)
        return r

    def length_offset(self, answer_chars):
        """The calibration's f(length) for answers of these lengths in characters (numpy, zeros if none)."""
        import numpy as np

        from .calibrate import LengthCalibration

        cal = LengthCalibration.from_dict(self.calibration)
        chars = np.asarray(answer_chars, dtype=np.float64)
        return cal(chars) if cal is not None else np.zeros_like(chars)

    def length_term(self, answer_chars) -> torch.Tensor:
        """beta * log(chars) per answer for the 'length' objective (zeros otherwise), (N,) float32 CPU."""
        chars = torch.as_tensor(answer_chars, dtype=torch.float32)
        if self.length_beta is None:
            return torch.zeros_like(chars)
        return float(self.length_beta.detach()) * torch.log(chars.clamp(min=1.0))

    @torch.no_grad()
    def decorrelate_heads(self, r_quality, r_length, length, min_length_corr: float = 0.3) -> float:
        """Move the length-correlated part of the quality head into the length head; return the factor c.

        With c = Cov(r_q, L) / Cov(r_l, L) measured on training answers, the heads become
        r_q' = r_q - c * r_l and r_l' = (1 + c) * r_l (a linear change of both heads' weights and biases):
        the summed reward, hence every ranking and the Bradley-Terry loss, is unchanged, and the quality
        head's covariance with length on those answers is exactly zero. It is the closed-form optimum of
        ODIN's |corr(r_q, L)| term within the span of the two heads, applied once after training; it
        relies on the length head carrying length, which ODIN's training ensures. Returns 0.0 (and
        changes nothing) when Pearson(r_length, L) < `min_length_corr` (say, after very few steps).
        """
        import numpy as np

        if self.length_head is None:
            raise ValueError("decorrelate_heads needs the ODIN length head")
        q, ln, L = (np.asarray(x, dtype=np.float64) for x in (r_quality, r_length, length))
        Lc = L - L.mean()
        cov_q, cov_l = float(((q - q.mean()) * Lc).mean()), float(((ln - ln.mean()) * Lc).mean())
        scale = float(ln.std() * L.std())
        corr_l = cov_l / scale if scale > 0 else 0.0
        if corr_l < min_length_corr:  # an untrained length head would only inject noise
            log.warning("length head does not track length (Pearson %.3f): heads left as they are", corr_l)
            return 0.0
        c = cov_q / cov_l
        if abs(1.0 + c) < 0.1:
            log.warning("decorrelation factor %.3f would erase the length head: heads left as they are", c)
            return 0.0
        wq, bq = self.quality_head.weight, self.quality_head.bias
        wl, bl = self.length_head.weight, self.length_head.bias
        wq.sub_(c * wl)
        bq.sub_(c * bl)
        wl.mul_(1.0 + c)
        bl.mul_(1.0 + c)
        return c

    def head_parameters(self) -> list[nn.Parameter]:
        heads = (self.quality_head, self.length_head, self.relevance_head)
        params = [p for h in heads if h is not None for p in h.parameters()]
        return params + ([self.length_beta] if self.length_beta is not None else [])

    # --- loss -------------------------------------------------------------------------------------------

    def compute_loss(
        self,
        batch: dict[str, torch.Tensor],
        weights: LossWeights | None = None,
        autocast_dtype=None,
        length_mean: float | None = None,
        forward=None,
    ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """One forward over chosen+rejected rows (2B, T) and the training loss; stats are detached.
        `length_mean` = mean answer length (characters) over the training set, for corr_mode 'global'.
        `forward` is what runs the model (a DDP wrapper or a torch.compile'd one; default self)."""
        weights = weights or LossWeights()
        device = batch["input_ids"].device
        forward = self if forward is None else forward  # not `or`: a compiled module has no len()
        with torch.autocast(device.type, dtype=autocast_dtype, enabled=autocast_dtype is not None):
            r_q, r_l, quality, relevance = forward(
                batch["input_ids"],
                batch.get("attention_mask"),
                batch.get("token_type_ids"),
                return_relevance=True,
                position_ids=batch.get("position_ids"),
                ends=batch.get("ends"),
            )  # (2B,) each
        with_relevance = self.relevance_head is not None
        return reward_loss(
            quality if with_relevance else r_q,  # Bradley-Terry ranks by the quality head alone
            r_l,
            batch["length"],
            batch["margin"],
            batch["weight"],
            weights,
            self.quality_head.weight if self.odin else None,
            self.length_head.weight if self.length_head is not None else None,
            length_mean,
            self.length_beta,
            relevance=relevance if with_relevance else None,
            mismatch=batch.get("mismatch"),
            synthetic=batch.get("synthetic"),
        )

    @torch.inference_mode()
    def score(
        self,
        tokenizer,
        prompts: Sequence[str],
        answers: Sequence[str],
        *,
        max_length: int | None = None,
        batch_size: int = 32,
    ) -> torch.Tensor:
        """Deployed reward of each (prompt, answer), (N,) on CPU: the quality head minus the length
        calibration, plus the relevance gate when fitted. For PPO / best-of-n / the web UI."""
        from .data import encode_texts, pad_token_id, token_budget_batches

        max_length = max_length or self.max_length or 256
        ids, types, _ = encode_texts(
            tokenizer, prompts, answers, max_length, with_types=self.uses_token_types
        )
        device = next(self.parameters()).device
        was_training = self.training
        self.eval()
        out = torch.empty(len(ids))
        lengths = [len(r) for r in ids]
        for chunk in token_budget_batches(
            lengths, batch_size, max_tokens=2 * batch_size * max_length
        ):  # rows count twice
            width = max(lengths[i] for i in chunk)
            x = torch.full((len(chunk), width), pad_token_id(tokenizer), dtype=torch.long)  # (B, T)
            m = torch.zeros_like(x)  # (B, T)
            t = torch.zeros_like(x) if types is not None else None
            for k, i in enumerate(chunk):
                x[k, : lengths[i]] = torch.tensor(ids[i])
                m[k, : lengths[i]] = 1
                if t is not None:
                    t[k, : lengths[i]] = torch.tensor(types[i])
            r = self.reward(x.to(device), m.to(device), t.to(device) if t is not None else None)
            out[torch.tensor(chunk)] = r.float().cpu()
        self.train(was_training)
        if self.calibration:
            out -= torch.as_tensor(self.length_offset([len(a) for a in answers]), dtype=out.dtype)
        if self.relevance_gate:
            out += torch.as_tensor(self.relevance_term(prompts, answers), dtype=out.dtype)
        return out

    def relevance_term(self, prompts: Sequence[str], answers: Sequence[str]):
        """The relevance gate's term per (prompt, answer), numpy (zeros without a gate): from the shipped
        MiniLM's cosine or the PMI under a causal LM, whichever gate was fitted (relevance.py)."""
        import numpy as np

        from .relevance import gate_from_dict

        gate = gate_from_dict(self.relevance_gate)
        if gate is None or not len(answers):
            return np.zeros(len(answers))
        return gate.term(prompts, answers, device=str(next(self.parameters()).device))

    def pair_relevance_terms(self, pairs):
        """`relevance_term` of both sides of each PreferencePair, numpy (2, N): chosen row, rejected row."""
        prompts = [p.prompt for p in pairs]
        answers = [p.chosen for p in pairs] + [p.rejected for p in pairs]
        return self.relevance_term(prompts + prompts, answers).reshape(2, -1)


def relevance_loss(relevance: torch.Tensor, mismatch: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Class-balanced cross-entropy of a relevance head over a batch's 2B answers (chosen rows, then
    rejected): every answer is on-prompt (label 1) except the rejected side of a mismatch pair, which
    was written for another prompt (label 0). Each class present weighs half. Returns (loss, accuracy)."""
    labels = torch.ones_like(relevance)  # (2B,)
    labels[mismatch.shape[0] :] = (~mismatch).to(relevance.dtype)
    ce = F.binary_cross_entropy_with_logits(relevance, labels, reduction="none")  # (2B,)
    pos, neg = labels > 0.5, labels < 0.5
    loss = ce[pos].mean() if not neg.any() else 0.5 * (ce[pos].mean() + ce[neg].mean())
    with torch.no_grad():
        accuracy = ((relevance > 0) == pos).float().mean()
    return loss, accuracy


def _length_correlation(r: torch.Tensor, length: torch.Tensor, length_mean: float | None, mode: str):
    """`global_correlation` (mode 'global', with the training-set mean length) or in-batch Pearson."""
    if mode == "global" and length_mean is not None:
        return global_correlation(r, length, length_mean)
    return pearson(r, length)


def _ranked_right(diff: torch.Tensor) -> torch.Tensor:
    """Share of pairs ranked right by these reward differences, a tie counting one half (evaluate._acc)."""
    return ((diff > 0).float() + 0.5 * (diff == 0).float()).mean()


def reward_loss(
    r_q: torch.Tensor,
    r_l: torch.Tensor,
    length: torch.Tensor,
    margin: torch.Tensor,
    weight: torch.Tensor,
    weights: LossWeights | None,
    w_quality: torch.Tensor | None = None,
    w_length: torch.Tensor | None = None,
    length_mean: float | None = None,
    length_beta: torch.Tensor | None = None,
    relevance: torch.Tensor | None = None,
    mismatch: torch.Tensor | None = None,
    synthetic: torch.Tensor | None = None,
) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """Bradley-Terry on the summed heads plus ODIN's disentangling terms, or with a length covariate.

    With `relevance` (2B,) logits of a relevance head, the prompt-mismatch pairs (`mismatch`, (B,) bool)
    leave the ranking loss and train the relevance head instead (`relevance_loss`).

    With `length_beta` (objective 'length') the logit is r_c - r_r + beta * (log len_c - log len_r):
    r_l is replaced by beta * log(len) and the ODIN terms are off.

    `synthetic` (B,) bool marks pairs made by augmentation (padding, prompt mismatch): the length
    term (covariate or ODIN's length head) stays out of their logit. A padded copy is always longer
    and loses, so with it in, these pairs taught the length term "shorter wins" and pulled beta far
    below the raters' own length preference (0.83 -> 0.16 on the shared pairs, reward held at 0).

    r_q, r_l, length: (2B,), the first B rows chosen, the last B rejected; margin, weight: (B,).
    With `w_length` None (plain model) r_l is zeros and the loss is Bradley-Terry on the quality head.
    The correlation terms are `global_correlation` (weights.corr_mode 'global', with `length_mean` given),
    which sees correlation across length-bucketed batches, or ODIN's in-batch Pearson ('batch').
    """
    B = margin.shape[0]
    weights = weights or LossWeights()
    r_q = r_q.float()  # fp32 whatever the backbone ran in: beta * log(length) is ~17, where bf16 steps 0.125
    if length_beta is not None:
        r_l = length_beta.float() * torch.log(length.float().clamp(min=1.0))  # (2B,)
    r_l_bt = r_l if synthetic is None else r_l * (~torch.cat([synthetic, synthetic])).to(r_l.dtype)
    r = r_q + r_l_bt  # (2B,) the summed reward the ranking loss sees
    if mismatch is None:
        mismatch = torch.zeros(B, dtype=torch.bool, device=r_q.device)
    ranked = None
    if relevance is not None:
        weight = weight * (~mismatch).to(weight.dtype)  # mismatch pairs train the relevance head only
        # ... and leave the mean's denominator too: counted there, they shrank the ranking loss by
        # their share of the batch (by half at one mismatch pair per human pair)
        ranked = (~mismatch).sum().clamp(min=1)  # a tensor: no host synchronisation per step
    bt_loss = bradley_terry_loss(r[:B], r[B:], margin, weight)
    if ranked is not None:
        bt_loss = bt_loss * (B / ranked)
    loss = bt_loss
    stats = {"bt_loss": bt_loss.detach()}
    if relevance is not None:
        rel_loss, rel_acc = relevance_loss(relevance, mismatch)
        loss = loss + weights.relevance * rel_loss
        stats |= {"relevance_loss": rel_loss.detach(), "relevance_accuracy": rel_acc}
    odin = w_length is not None and w_quality is not None
    if weights.reward_corr > 0 and not odin:
        corr_q = _length_correlation(r_q, length.to(r_q.dtype), length_mean, weights.corr_mode)
        loss = loss + weights.reward_corr * corr_q.abs()
        stats["corr_quality"] = corr_q.detach()
    if odin:
        length = length.to(r_q.dtype)
        corr_q = _length_correlation(r_q, length, length_mean, weights.corr_mode)
        corr_l = _length_correlation(r_l, length, length_mean, weights.corr_mode)
        ortho = (w_quality.flatten() * w_length.flatten()).sum().abs()
        loss = (
            loss + weights.corr_quality * corr_q.abs() - weights.corr_length * corr_l + weights.ortho * ortho
        )
        stats |= {"corr_quality": corr_q.detach(), "corr_length": corr_l.detach(), "ortho": ortho.detach()}
    with torch.no_grad():
        q_c, q_r = r_q[:B], r_q[B:]
        stats |= {
            "loss": loss.detach(),
            "accuracy": _ranked_right(q_c - q_r),
            "accuracy_sum": _ranked_right(r[:B] - r[B:]),
            "margin": (q_c - q_r).mean(),
            "reward_mean": r_q.mean(),
            "reward_std": r_q.std() if r_q.numel() > 1 else torch.zeros(()),
        }
        if length_beta is not None:
            stats["length_beta"] = length_beta.detach().clone()
    return loss, stats
