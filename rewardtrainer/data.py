"""Preference pairs: loading, prompt-grouped splits, tokenization and length-bucketed batches.

The file format is TRL's preference format, one JSON object a line:

    {"prompt": "...", "chosen": "...", "rejected": "...", "margin": 0.5, "weight": 1.0, "id": "p17"}

`chosen` / `rejected` may also be TRL conversational lists (`[{"role": "assistant", "content": "..."}]`);
the assistant's content is taken. Usage:

    pairs = load_jsonl("prefs.jsonl")
    train, val = split_by_prompt(pairs, val_fraction=0.1, seed=0)
    enc = encode_pairs(train, tokenizer, max_length=256)
    for idx in bucketed_batches(enc.lengths, batch_size=16, seed=0):
        batch = collate(enc, idx)  # input_ids (2B, T): B chosen rows, then B rejected rows

Efficiency (what makes training on a 2-core CPU bearable): tokenization happens once, prompts are
tokenized once per distinct prompt, batches are padded to their own longest row (dynamic padding) and
rows of similar length are batched together (length bucketing, as in fairseq / HF `group_by_length`),
and chosen and rejected answers of a pair share one forward pass.
"""

from __future__ import annotations

import json
import logging
import random
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # numpy and torch are imported where used: the web container imports this module
    import numpy as np  # for PreferencePair / load_jsonl / DataError and has neither installed.
    import torch

log = logging.getLogger(__name__)

# Placeholders used to find where prompt and answer go inside a rendered chat template.
_PROMPT_SLOT = "\u2063PROMPT\u2063"
_ANSWER_SLOT = "\u2063ANSWER\u2063"


class DataError(ValueError):
    """The preference data cannot be used (malformed file, no pairs, nothing to learn from)."""


# Only CR and LF end a JSONL line: JSON allows U+2028, U+0085 and the like unescaped inside strings
# (str.splitlines() split there, and a valid line came back as two malformed ones). CR and LF cannot
# be inside a JSON string, so splitting at them never breaks a value.
_JSONL_LINE_END = re.compile(r"\r\n|\r|\n")


def jsonl_lines(text: str) -> list[str]:
    """The lines of a JSONL text, split where JSON allows a line to end (CR, LF, CRLF) and nowhere else."""
    return _JSONL_LINE_END.split(text)


@dataclass
class PreferencePair:
    """One human judgment: `chosen` was preferred over `rejected` as an answer to `prompt`."""

    prompt: str
    chosen: str
    rejected: str
    margin: float = 0.0
    weight: float = 1.0
    pair_id: str = ""
    prompt_id: str = ""


# ---------------------------------------------------------------------------------------------------------
# Loading


def _message_text(value: Any, field_name: str, lineno: int) -> str:
    """A plain string, or the content of the last assistant message of a TRL conversational list."""
    if isinstance(value, str):
        return value
    if isinstance(value, list) and value and all(isinstance(m, dict) for m in value):
        assistant = [m for m in value if m.get("role") == "assistant"]
        chosen = assistant[-1] if assistant else value[-1]
        content = chosen.get("content")
        if isinstance(content, list):  # multimodal-style content parts: keep the text parts
            content = "".join(p.get("text", "") for p in content if isinstance(p, dict))
        if isinstance(content, str):
            return content
    raise DataError(f"line {lineno}: {field_name!r} must be a string or a list of {{role, content}} messages")


def _prompt_text(value: Any, lineno: int) -> str:
    """A plain string, or the non-assistant turns of a conversational prompt joined by blank lines."""
    if isinstance(value, str):
        return value
    if isinstance(value, list) and all(
        isinstance(m, dict) and isinstance(m.get("content"), str) for m in value
    ):
        return "\n\n".join(m["content"] for m in value)
    raise DataError(f"line {lineno}: 'prompt' must be a string or a list of {{role, content}} messages")


_FLOAT32_MAX = 3.4028234663852886e38  # margins and weights are float32 tensors: 1e308 became inf there


def _number(row: dict, key: str, default: float, lineno: int) -> float:
    value = row.get(key, default)
    if value is None:
        return default
    try:
        ok = not isinstance(value, bool) and isinstance(value, int | float) and abs(value) <= _FLOAT32_MAX
    except OverflowError:  # an integer of 400 digits
        ok = False
    if not ok:  # NaN fails the comparison too
        shown = value if not isinstance(value, int) or abs(value) < 10**20 else f"{str(value)[:12]}..."
        raise DataError(f"line {lineno}: {key!r} must be a finite number (float32), got {shown!r}")
    return float(value)


def _encodable(text: str, key: str, lineno: int) -> str:
    """DataError for a text with a lone surrogate (JSON's escaped "\\ud800"): the tokenizer raised a
    TypeError on it after loading, naming no row."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        raise DataError(f"line {lineno}: {key!r} holds a lone surrogate (not valid Unicode text)") from None
    return text


def pair_from_dict(row: Any, lineno: int = 0, default_id: str = "") -> PreferencePair:
    """Validate one TRL-format record; raise DataError naming the line on anything malformed."""
    if not isinstance(row, dict):
        raise DataError(f"line {lineno}: expected a JSON object, got {type(row).__name__}")
    for key in ("chosen", "rejected"):
        if key not in row:
            raise DataError(f"line {lineno}: missing field {key!r}")
    chosen = _message_text(row["chosen"], "chosen", lineno)
    rejected = _message_text(row["rejected"], "rejected", lineno)
    if "prompt" in row:
        prompt = _prompt_text(row["prompt"], lineno)
    elif isinstance(row["chosen"], list):  # TRL "implicit prompt": the turns before the answer
        prompt = _prompt_text([m for m in row["chosen"] if m.get("role") != "assistant"], lineno)
    else:
        raise DataError(f"line {lineno}: missing field 'prompt'")
    weight = _number(row, "weight", 1.0, lineno)
    if weight < 0:
        raise DataError(f"line {lineno}: 'weight' must be >= 0, got {weight}")
    margin = _number(row, "margin", 0.0, lineno)
    if margin < 0:  # the loss is -logsigmoid(r_chosen - r_rejected - margin): below 0 the rejected may win
        raise DataError(
            f"line {lineno}: 'margin' must be >= 0 (how much more the chosen answer should score), "
            f"got {margin}"
        )
    return PreferencePair(
        prompt=_encodable(prompt, "prompt", lineno),
        chosen=_encodable(chosen, "chosen", lineno),
        rejected=_encodable(rejected, "rejected", lineno),
        margin=margin,
        weight=weight,
        pair_id=str(row.get("id", row.get("pair_id", default_id))),
        prompt_id=str(row.get("prompt_id") or ""),
    )


def load_jsonl(path: str | Path) -> list[PreferencePair]:
    """Read a TRL preference JSONL file. Blank lines are skipped; anything else malformed raises DataError."""
    path = Path(path)
    pairs = []
    simulated = 0
    with path.open("rb") as f:
        if f.read(4) == b"PAR1":
            raise DataError(f"{path}: a Parquet file; the trainer reads JSONL (export with --format jsonl)")
        f.seek(0)
        for lineno, raw in enumerate(f, start=1):
            try:
                line = raw.decode("utf-8")
            except UnicodeDecodeError as e:
                where = f"byte {e.start + 1} of the line"
                raise DataError(f"{path}: line {lineno}: not UTF-8 ({where})") from None
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError as e:
                raise DataError(f"{path}: line {lineno}: invalid JSON ({e.msg})") from None
            try:
                pairs.append(pair_from_dict(row, lineno, default_id=f"{path.stem}:{lineno}"))
            except DataError as e:
                raise DataError(f"{path}: {e}") from None
            simulated += bool(row.get("simulated")) or bool(row.get("n_simulated"))
    if simulated:  # the app's export marks them; they trained without a word
        log.warning(
            "%s: %d of %d rows come from simulated raters; drop them before training on a real "
            "deployment's data",
            path,
            simulated,
            len(pairs),
        )
    return pairs


def prompt_key(pair: PreferencePair) -> str:
    """A pair's own prompt key: its `prompt_id`, or else its prompt text with case and runs of white
    space ignored (the shared data holds a prompt twice, once lower-cased and on one line: as two
    groups, the split put them on both sides). Group pairs with `prompt_groups`, which also joins
    prompts of the same text under different ids."""
    return pair.prompt_id or _text_key(pair.prompt)


def _text_key(prompt: str) -> str:
    return "text:" + " ".join(prompt.casefold().split())


def prompt_groups(pairs: Sequence[PreferencePair]) -> tuple[dict[str, list[int]], list[str]]:
    """The pairs by prompt: (group key -> pair indices, each pair's group key). Pairs that share a
    `prompt_id`, or whose prompts have the same text (case and runs of white space aside), are one
    group, transitively, under the `prompt_key` of the group's first pair: the app may store one
    question as two prompts, and as two groups the split put the question on both sides and the
    prompt-mismatch augmentation took an answer to the very same question as the "foreign" one
    (teaching a worse answer over a better). Without such duplicates the groups and keys are
    `prompt_key`'s, so splits stay as they were."""
    parent = list(range(len(pairs)))

    def root(i: int) -> int:
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    first_seen: dict[tuple[str, str], int] = {}
    for i, p in enumerate(pairs):
        labels = [("text", _text_key(p.prompt))] + ([("id", p.prompt_id)] if p.prompt_id else [])
        for label in labels:  # ids and texts apart: an id spelled "text:..." is not that text
            j = first_seen.setdefault(label, i)
            a, b = root(i), root(j)
            if a != b:
                parent[max(a, b)] = min(a, b)  # the earliest pair names the group
    keys = [prompt_key(pairs[root(i)]) for i in range(len(pairs))]
    groups: dict[str, list[int]] = {}
    for i, key in enumerate(keys):
        groups.setdefault(key, []).append(i)
    return groups, keys


def split_by_prompt(
    pairs: Sequence[PreferencePair], val_fraction: float, seed: int = 0
) -> tuple[list[PreferencePair], list[PreferencePair]]:
    """Split into (train, val) so that no prompt has pairs on both sides.

    Prompts are grouped by `prompt_groups`. Whole groups go to validation in a seeded random order until
    it holds about `val_fraction` of the pairs.
    """
    if not 0.0 < val_fraction < 1.0:
        raise ValueError(f"val_fraction must be in (0, 1), got {val_fraction}")
    groups, _ = prompt_groups(pairs)
    if len(groups) < 2:
        raise DataError(
            f"cannot split {len(pairs)} pairs by prompt: they share {len(groups)} prompt(s); "
            "validation needs pairs whose prompt is not in the training set"
        )
    keys = sorted(groups)
    random.Random(seed).shuffle(keys)
    target = max(1, round(val_fraction * len(pairs)))
    val_keys: list[str] = []
    n_val = 0
    for key in keys:
        if n_val >= target:
            break
        val_keys.append(key)
        n_val += len(groups[key])
    if n_val >= len(pairs):  # one huge group took everything: give the last one back
        n_val -= len(groups[val_keys.pop()])
    val_set = set(val_keys)
    train = [pairs[i] for k in keys if k not in val_set for i in groups[k]]
    val = [pairs[i] for k in val_keys for i in groups[k]]
    if not train or not val:
        raise DataError(f"splitting {len(pairs)} pairs by prompt left train={len(train)} val={len(val)}")
    return train, val


def length_balance_factors(pairs: Sequence[PreferencePair]) -> np.ndarray:
    """Per-pair weight factors (N,) under which the pairs the longer answer won and those the shorter
    answer won (in characters) carry equal total weight; pairs of equal length keep theirs, and so does
    the total.

    Raters pick the longer answer about 70% of the time, so under equal weights "longer is better" is
    the cheapest thing a reward model can learn; once both groups weigh the same, length predicts
    nothing and only what separates answers of either kind lowers the loss (Singhal et al. 2023 balance
    the data by length to the same end). The pairs' own weights (rater trust) stay factors of the
    result. When one group is empty there is nothing to balance: all factors are 1.
    """
    import numpy as np

    sign = np.array([(len(p.chosen) > len(p.rejected)) - (len(p.chosen) < len(p.rejected)) for p in pairs])
    weight = np.array([p.weight for p in pairs], dtype=np.float64)
    w_longer, w_shorter = weight[sign > 0].sum(), weight[sign < 0].sum()
    factors = np.ones(len(pairs), dtype=np.float64)
    if w_longer > 0 and w_shorter > 0:
        half = (w_longer + w_shorter) / 2
        factors[sign > 0] = half / w_longer
        factors[sign < 0] = half / w_shorter
    return factors


# ---------------------------------------------------------------------------------------------------------
# Tokenization


@dataclass
class PairTemplate:
    """Token ids around prompt and answer: prefix + prompt + middle + answer + suffix.

    Found once per tokenizer, from its chat template when it has one (user=prompt, assistant=answer),
    else from its text-pair encoding ([CLS] p [SEP] a [SEP] for BERT). Prompt and answer are tokenized
    separately, so truncating them is list slicing instead of re-tokenizing.
    """

    prefix: list[int]
    middle: list[int]
    suffix: list[int]
    prompt_type: int = 0
    answer_type: int = 0
    chat: bool = False

    @property
    def overhead(self) -> int:
        return len(self.prefix) + len(self.middle) + len(self.suffix)

    @classmethod
    def from_tokenizer(cls, tokenizer) -> PairTemplate:
        if getattr(tokenizer, "chat_template", None):
            messages = [
                {"role": "user", "content": _PROMPT_SLOT},
                {"role": "assistant", "content": _ANSWER_SLOT},
            ]
            text = tokenizer.apply_chat_template(messages, tokenize=False)
            if text.count(_PROMPT_SLOT) == 1 and text.count(_ANSWER_SLOT) == 1:
                pre, rest = text.split(_PROMPT_SLOT)
                mid, post = rest.split(_ANSWER_SLOT)
                ids = [
                    tokenizer(s, add_special_tokens=False)["input_ids"] if s else [] for s in (pre, mid, post)
                ]
                return cls(prefix=ids[0], middle=ids[1], suffix=ids[2], chat=True)
            log.warning("chat template did not render prompt and answer once each; using text-pair encoding")
        a_text, b_text = "alpha", "omega"
        a = tokenizer(a_text, add_special_tokens=False)["input_ids"]
        b = tokenizer(b_text, add_special_tokens=False)["input_ids"]
        enc = tokenizer(a_text, b_text)
        full = list(enc["input_ids"])
        i = _find(full, a, 0)
        j = _find(full, b, i + len(a)) if i >= 0 else -1
        if i < 0 or j < 0:
            prefix, middle, suffix, types = [], [], [], None
        else:
            prefix, middle, suffix = full[:i], full[i + len(a) : j], full[j + len(b) :]
            types = enc.get("token_type_ids")
        if not middle:  # decoder tokenizers add nothing between a pair: keep prompt and answer apart
            middle = tokenizer("\n\n", add_special_tokens=False)["input_ids"]
        eos = getattr(tokenizer, "eos_token_id", None)
        if not suffix and eos is not None:  # last-token pooling reads an end-of-sequence token
            suffix = [eos]
        return cls(
            prefix=prefix,
            middle=middle,
            suffix=suffix,
            prompt_type=int(types[i]) if types else 0,
            answer_type=int(types[j]) if types else 0,
        )


def _find(haystack: list[int], needle: list[int], start: int) -> int:
    for k in range(start, len(haystack) - len(needle) + 1):
        if haystack[k : k + len(needle)] == needle:
            return k
    return -1


# The share of the token budget the prompt keeps when prompt + answer do not fit. Without it a long answer
# pushed the prompt out entirely, and the model could not tell an answer to this prompt from an answer to
# another one (the off-prompt test sat at a coin's 50% at max_length 128).
PROMPT_SHARE = 0.25


def truncate(prompt_ids: list[int], answer_ids: list[int], budget: int) -> tuple[list[int], list[int]]:
    """Fit prompt + answer into `budget` tokens; never drops the pair.

    The prompt keeps up to PROMPT_SHARE of the budget (more when the answer is short), taken from its
    END: the part next to the answer, usually the question itself. The answer keeps the rest: its head
    and its tail, half each (head+tail truncation, Sun et al. 2019, "How to Fine-Tune BERT for Text
    Classification?"), so how it ends stays visible: filler, a repetition or a missing conclusion at
    the end of a long answer is what a cut from the right hid.
    """
    if budget <= 0:
        raise ValueError("max_length leaves no room for text after the template's special tokens")
    if len(prompt_ids) + len(answer_ids) <= budget:
        return prompt_ids, answer_ids
    p_keep = min(len(prompt_ids), max(budget - len(answer_ids), int(budget * PROMPT_SHARE)))
    a_keep = budget - p_keep
    tp = prompt_ids[len(prompt_ids) - p_keep :] if p_keep else []
    if len(answer_ids) <= a_keep:
        return tp, answer_ids
    head = (a_keep + 1) // 2
    tail = a_keep - head
    return tp, answer_ids[:head] + (answer_ids[len(answer_ids) - tail :] if tail else [])


@dataclass
class EncodedPairs:
    """Token ids of every pair, ready for `collate`. Row i of each list belongs to pair i."""

    chosen_ids: list[list[int]]
    rejected_ids: list[list[int]]
    chosen_types: list[list[int]] | None
    rejected_types: list[list[int]] | None
    margin: np.ndarray  # (N,)
    weight: np.ndarray  # (N,)
    chosen_chars: np.ndarray  # (N,) answer length in characters
    rejected_chars: np.ndarray  # (N,)
    pad_id: int
    n_truncated: int = 0
    mismatch: np.ndarray | None = None  # (N,) bool: a prompt-mismatch pair (augment.mismatch_pairs)
    # (N,) bool: a pair made by augmentation (mismatch or padding), not by a rater: the length term
    # stays out of its logit, since its length difference says nothing about the raters' taste
    synthetic: np.ndarray | None = None
    lengths: np.ndarray = field(init=False)  # (N,) tokens of the longer side: what a batch pads to

    def __post_init__(self) -> None:
        import numpy as np

        self.lengths = np.array(
            [max(len(c), len(r)) for c, r in zip(self.chosen_ids, self.rejected_ids, strict=True)],
            dtype=np.int64,
        )

    def __len__(self) -> int:
        return len(self.chosen_ids)


def pad_token_id(tokenizer) -> int:
    for attr in ("pad_token_id", "eos_token_id", "unk_token_id"):
        value = getattr(tokenizer, attr, None)
        if value is not None:
            return int(value)
    return 0


def encode_texts(
    tokenizer, prompts: Sequence[str], answers: Sequence[str], max_length: int, *, with_types: bool = False
) -> tuple[list[list[int]], list[list[int]] | None, int]:
    """Tokenize (prompt, answer) rows with the tokenizer's template; returns (ids, type ids, n truncated)."""
    template = PairTemplate.from_tokenizer(tokenizer)
    budget = max_length - template.overhead
    unique = list(dict.fromkeys(prompts))  # several pairs share a prompt: tokenize it once
    prompt_tok = dict(zip(unique, _tokenize(tokenizer, unique), strict=True))
    answer_tok = _tokenize(tokenizer, answers)
    ids, types, n_truncated = [], [] if with_types else None, 0
    for prompt, a in zip(prompts, answer_tok, strict=True):
        p = prompt_tok[prompt]
        tp, ta = truncate(p, a, budget)
        n_truncated += len(tp) + len(ta) < len(p) + len(a)
        ids.append(template.prefix + tp + template.middle + ta + template.suffix)
        if types is not None:
            n_prompt = len(template.prefix) + len(tp) + len(template.middle)
            types.append(
                [template.prompt_type] * n_prompt + [template.answer_type] * (len(ta) + len(template.suffix))
            )
    return ids, types, n_truncated


def _tokenize(tokenizer, texts: Sequence[str]) -> list[list[int]]:
    if not texts:
        return []
    return tokenizer(list(texts), add_special_tokens=False, verbose=False)["input_ids"]


def encode_pairs(
    pairs: Sequence[PreferencePair], tokenizer, max_length: int, *, with_types: bool = False
) -> EncodedPairs:
    """Tokenize every pair once (chosen and rejected, each with its prompt), truncated to `max_length`."""
    import numpy as np

    prompts = [p.prompt for p in pairs]
    ids, types, n_trunc = encode_texts(
        tokenizer,
        prompts + prompts,
        [p.chosen for p in pairs] + [p.rejected for p in pairs],
        max_length,
        with_types=with_types,
    )
    n = len(pairs)
    if n_trunc:
        log.info(
            "truncated %d of %d sequences to %d tokens (the prompt's end, the answer's head and tail)",
            n_trunc,
            2 * n,
            max_length,
        )
    return EncodedPairs(
        chosen_ids=ids[:n],
        rejected_ids=ids[n:],
        chosen_types=types[:n] if types is not None else None,
        rejected_types=types[n:] if types is not None else None,
        margin=np.array([p.margin for p in pairs], dtype=np.float32),
        weight=np.array([p.weight for p in pairs], dtype=np.float32),
        chosen_chars=np.array([len(p.chosen) for p in pairs], dtype=np.float32),
        rejected_chars=np.array([len(p.rejected) for p in pairs], dtype=np.float32),
        pad_id=pad_token_id(tokenizer),
        n_truncated=n_trunc,
    )


# ---------------------------------------------------------------------------------------------------------
# Batching


def bucketed_batches(
    lengths: np.ndarray | Sequence[int], batch_size: int, seed: int, chunk_batches: int = 50
) -> list[list[int]]:
    """Batches of indices with similar lengths, in a random order.

    Shuffle all indices, cut them into mega-chunks of `chunk_batches * batch_size`, sort each chunk by
    length, cut it into batches, then shuffle the batches. Sorting inside chunks keeps some randomness
    in which pairs meet; shuffling batches keeps long and short batches mixed over the epoch.
    Deterministic in `seed`, so a resumed run can rebuild the same order and skip what it has seen.
    """
    import numpy as np

    lengths = np.asarray(lengths)
    rng = np.random.default_rng(seed)
    order = rng.permutation(len(lengths))
    chunk = max(batch_size, batch_size * chunk_batches)
    batches: list[list[int]] = []
    for start in range(0, len(order), chunk):
        idx = order[start : start + chunk]
        idx = idx[np.argsort(lengths[idx], kind="stable")]
        batches.extend(idx[i : i + batch_size].tolist() for i in range(0, len(idx), batch_size))
    return [batches[i] for i in rng.permutation(len(batches))]


def budget_batches(
    lengths: np.ndarray | Sequence[int],
    max_tokens: int,
    seed: int | Sequence[int],
    *,
    max_pairs: int = 4096,
    chunk_pairs: int = 2048,
) -> list[list[int]]:
    """Training batches filled up to a token budget instead of a fixed pair count, in a random order.

    Like `bucketed_batches` (shuffle, sort within chunks, shuffle the batches) but a batch takes pairs of
    similar length until 2 rows x pairs x its longest row would pass `max_tokens`: short pairs travel
    in wide batches, long ones in narrow batches, so every step does about the same work and the
    accelerator is never fed a batch of a few short rows. Deterministic in `seed` (resume relies on it).
    """
    import numpy as np

    lengths = np.asarray(lengths)
    rng = np.random.default_rng(seed)
    order = rng.permutation(len(lengths))
    batches: list[list[int]] = []
    for start in range(0, len(order), chunk_pairs):
        idx = order[start : start + chunk_pairs]
        idx = idx[np.argsort(lengths[idx], kind="stable")]
        current: list[int] = []
        width = 0
        for i in idx.tolist():
            w = max(width, int(lengths[i]))
            if current and (len(current) >= max_pairs or 2 * (len(current) + 1) * w > max_tokens):
                batches.append(current)
                current, w = [], int(lengths[i])
            current.append(i)
            width = w
        if current:
            batches.append(current)
    return [batches[i] for i in rng.permutation(len(batches))]


def random_batches(n: int, batch_size: int, seed: int) -> list[list[int]]:
    """Plain shuffled batches (what a DataLoader with shuffle=True gives), for comparison."""
    import numpy as np

    order = np.random.default_rng(seed).permutation(n)
    return [order[i : i + batch_size].tolist() for i in range(0, n, batch_size)]


def token_budget_batches(
    lengths: np.ndarray | Sequence[int], max_pairs: int, max_tokens: int
) -> list[list[int]]:
    """Evaluation batches: longest first, as many pairs as fit `max_tokens` padded tokens (2 rows a pair)."""
    import numpy as np

    lengths = np.asarray(lengths)
    batches, current, width = [], [], 0
    for i in np.argsort(-lengths, kind="stable").tolist():
        new_width = max(width, int(lengths[i]))
        if current and (len(current) >= max_pairs or 2 * (len(current) + 1) * new_width > max_tokens):
            batches.append(current)
            current, new_width = [], int(lengths[i])
        current.append(i)
        width = new_width
    if current:
        batches.append(current)
    return batches


def pad_fraction(batches: Sequence[Sequence[int]], lengths: np.ndarray | Sequence[int]) -> float:
    """Share of the computed (padded) token positions that are padding, counting both rows of a pair."""
    import numpy as np

    lengths = np.asarray(lengths)
    real = padded = 0
    for b in batches:
        ls = lengths[list(b)]
        real += int(ls.sum())
        padded += int(ls.max()) * len(ls)
    return 1.0 - real / padded if padded else 0.0


GPU_WIDTH_MULTIPLE = 16


def width_multiple(device_type: str, configured: int = 0) -> int:
    """The batch-width multiple for a device: `configured` (TrainConfig.pad_to_multiple) if set, else 16
    on CUDA (a bounded number of batch shapes; each new one costs once there) and 1 elsewhere."""
    return configured or (GPU_WIDTH_MULTIPLE if device_type == "cuda" else 1)


def round_up(n: int, multiple: int) -> int:
    """The smallest multiple of `multiple` that is at least n."""
    return -(-n // multiple) * multiple


def padded_width(longest: int, multiple: int = 1, cap: int = 0) -> int:
    """A batch's width: its longest row rounded up to a multiple of `multiple`, but not past
    max(longest, cap) (a backbone's position table may end at the trainer's max_length)."""
    if multiple <= 1:
        return longest
    return min(round_up(longest, multiple), max(longest, cap or longest))


def collate(
    enc: EncodedPairs, indices: Sequence[int], multiple: int = 1, cap: int = 0
) -> dict[str, torch.Tensor]:
    """Pad one batch: rows 0..B-1 are the chosen answers, rows B..2B-1 the rejected ones, right padding,
    to the longest row rounded up to a multiple of `multiple` (at most `cap`; see padded_width)."""
    import numpy as np
    import torch

    rows = [enc.chosen_ids[i] for i in indices] + [enc.rejected_ids[i] for i in indices]
    width = padded_width(max(len(r) for r in rows), multiple, cap)
    input_ids = np.full((len(rows), width), enc.pad_id, dtype=np.int64)  # (2B, T)
    attention_mask = np.zeros((len(rows), width), dtype=np.int64)  # (2B, T)
    for k, r in enumerate(rows):
        input_ids[k, : len(r)] = r
        attention_mask[k, : len(r)] = 1
    batch = {
        "input_ids": torch.from_numpy(input_ids),
        "attention_mask": torch.from_numpy(attention_mask),
        **_pair_fields(enc, indices),
    }
    if enc.chosen_types is not None and enc.rejected_types is not None:
        types = np.zeros((len(rows), width), dtype=np.int64)  # (2B, T)
        trows = [enc.chosen_types[i] for i in indices] + [enc.rejected_types[i] for i in indices]
        for k, r in enumerate(trows):
            types[k, : len(r)] = r
        batch["token_type_ids"] = torch.from_numpy(types)
    return batch


def _pair_fields(enc: EncodedPairs, indices: Sequence[int]) -> dict[str, torch.Tensor]:
    """What the loss reads per pair (margin, weight, mismatch) and per row (answer length in characters)."""
    import numpy as np
    import torch

    idx = np.asarray(indices)
    fields = {
        "margin": torch.from_numpy(enc.margin[idx]),  # (B,)
        "weight": torch.from_numpy(enc.weight[idx]),  # (B,)
        "length": torch.from_numpy(np.concatenate([enc.chosen_chars[idx], enc.rejected_chars[idx]])),  # (2B,)
    }
    if enc.mismatch is not None:
        fields["mismatch"] = torch.from_numpy(enc.mismatch[idx])  # (B,) bool
    if enc.synthetic is not None:
        fields["synthetic"] = torch.from_numpy(enc.synthetic[idx])  # (B,) bool
    return fields


# ---------------------------------------------------------------------------------------------------------
# Packing: every row of a micro-batch end to end in one sequence, no padding between them


PACKED_WIDTH_MULTIPLE = 1024


def pair_tokens(enc: EncodedPairs) -> np.ndarray:
    """(N,) tokens of both rows of each pair: what a pair costs in a packed batch."""
    import numpy as np

    return np.array([len(c) + len(r) for c, r in zip(enc.chosen_ids, enc.rejected_ids, strict=True)])


def packed_batches(
    tokens: np.ndarray | Sequence[int], max_tokens: int, seed: int | Sequence[int]
) -> list[list[int]]:
    """Training batches for packing: pairs in a random order, each batch filled until the next pair's
    rows (`tokens`, both rows) would pass `max_tokens`. Padding does not depend on which lengths meet,
    so there is no length bucketing (and no correlation of batch with length). A pair longer than the
    budget travels alone. Deterministic in `seed` (resume relies on it)."""
    import numpy as np

    tokens = np.asarray(tokens)
    batches: list[list[int]] = []
    current: list[int] = []
    total = 0
    for i in np.random.default_rng(seed).permutation(len(tokens)).tolist():
        if current and total + int(tokens[i]) > max_tokens:
            batches.append(current)
            current, total = [], 0
        current.append(i)
        total += int(tokens[i])
    if current:
        batches.append(current)
    return batches


def packed_multiple(device_type: str) -> int:
    """What a packed row's length is rounded up to: 1024 on CUDA (a bounded number of shapes, each of
    which costs once there), 1 elsewhere."""
    return PACKED_WIDTH_MULTIPLE if device_type == "cuda" else 1


def collate_packed(
    enc: EncodedPairs, indices: Sequence[int], multiple: int = 1, width: int = 0
) -> dict[str, torch.Tensor]:
    """One packed batch: the chosen rows then the rejected rows, end to end in a (1, L) sequence, L their
    total length rounded up to a multiple of `multiple`, and at least `width` (one shape for a run).

    `position_ids` restart at 0 for every row, which is how transformers recognises packed sequences
    (masking_utils.find_packed_sequence_indices) and keeps each row attending to itself only; the tail
    up to L is padding, sequences nobody reads, none longer than the longest row.
    `ends` (2B,) holds each row's last token, where a decoder's reward is read. No attention mask:
    a 2D mask would switch the packed-sequence detection off."""
    import numpy as np
    import torch

    rows = [enc.chosen_ids[i] for i in indices] + [enc.rejected_ids[i] for i in indices]
    lengths = np.array([len(r) for r in rows])
    total = int(lengths.sum())
    width = max(width, round_up(total, multiple))
    input_ids = np.full((1, width), enc.pad_id, dtype=np.int64)  # (1, L)
    input_ids[0, :total] = np.concatenate(rows)
    starts = np.concatenate([[0], np.cumsum(lengths)[:-1]])
    # The tail restarts its positions every longest-row tokens: numbered on to its end, a tail longer
    # than a learned position table (GPT-2, OPT; a compiled run pads each batch to the token budget)
    # indexed past it
    chunk = max(int(lengths.max()) if len(rows) else 1, 1)
    positions = np.concatenate(
        [np.arange(total) - np.repeat(starts, lengths), np.arange(width - total) % chunk]
    )
    return {
        "input_ids": torch.from_numpy(input_ids),
        "position_ids": torch.from_numpy(positions[None].astype(np.int64)),  # (1, L)
        "ends": torch.from_numpy((starts + lengths - 1).astype(np.int64)),  # (2B,)
        **_pair_fields(enc, indices),
    }
