"""Loading, splitting, tokenization/truncation and batching of preference pairs."""

from __future__ import annotations

import json
import random

import numpy as np
import pytest

from rewardtrainer.data import (
    DataError,
    PairTemplate,
    PreferencePair,
    bucketed_batches,
    collate,
    collate_packed,
    encode_pairs,
    load_jsonl,
    packed_batches,
    packed_multiple,
    pad_fraction,
    padded_width,
    random_batches,
    split_by_prompt,
    token_budget_batches,
    truncate,
    width_multiple,
)


def write_lines(path, lines):
    path.write_text("\n".join(x if isinstance(x, str) else json.dumps(x) for x in lines) + "\n")
    return path


def test_it_loads_trl_standard_and_conversational_rows(tmp_path):
    path = write_lines(
        tmp_path / "prefs.jsonl",
        [
            {"prompt": "2+2?", "chosen": "4", "rejected": "5", "margin": 0.5, "weight": 2, "id": "a1"},
            "",
            {
                "prompt": [{"role": "user", "content": "Hi?"}],
                "chosen": [{"role": "assistant", "content": "Hello!"}],
                "rejected": [{"role": "assistant", "content": "Go away."}],
            },
            {  # TRL "implicit prompt": the conversation is inside chosen / rejected
                "chosen": [{"role": "user", "content": "Name?"}, {"role": "assistant", "content": "Ada."}],
                "rejected": [{"role": "user", "content": "Name?"}, {"role": "assistant", "content": "No."}],
                "prompt_id": "q7",
            },
        ],
    )
    pairs = load_jsonl(path)
    assert pairs[0] == PreferencePair("2+2?", "4", "5", margin=0.5, weight=2.0, pair_id="a1")
    assert (pairs[1].prompt, pairs[1].chosen, pairs[1].rejected) == ("Hi?", "Hello!", "Go away.")
    assert pairs[1].pair_id == "prefs:3"  # file stem and line number when there is no id
    assert (pairs[2].prompt, pairs[2].chosen, pairs[2].rejected, pairs[2].prompt_id) == (
        "Name?",
        "Ada.",
        "No.",
        "q7",
    )


@pytest.mark.parametrize(
    ("bad_line", "message"),
    [
        ("{not json", "line 2: invalid JSON"),
        (json.dumps({"prompt": "p", "chosen": "c"}), "line 2: missing field 'rejected'"),
        (json.dumps({"prompt": "p", "chosen": 3, "rejected": "r"}), "line 2: 'chosen' must be a string"),
        (json.dumps({"prompt": "p", "chosen": "c", "rejected": "r", "weight": -1}), "line 2: 'weight'"),
        (json.dumps({"prompt": "p", "chosen": "c", "rejected": "r", "margin": "big"}), "line 2: 'margin'"),
        # a negative margin trained the rejected answer to win by up to that much, silently
        (
            json.dumps({"prompt": "p", "chosen": "c", "rejected": "r", "margin": -0.5}),
            "line 2: 'margin' must be >= 0",
        ),
        (json.dumps(["p", "c", "r"]), "line 2: expected a JSON object"),
        # inf as float32 (a traceback blaming the learning rate), an overflow, a tokenizer TypeError
        (json.dumps({"prompt": "p", "chosen": "c", "rejected": "r", "margin": 1e308}), "line 2: 'margin'"),
        (json.dumps({"prompt": "p", "chosen": "c", "rejected": "r", "weight": 10**400}), "line 2: 'weight'"),
        (
            '{"prompt": "p", "chosen": "b\\ud800ad", "rejected": "r"}',
            "line 2: 'chosen' holds a lone surrogate",
        ),
    ],
)
def test_it_rejects_a_malformed_line_naming_it(tmp_path, bad_line, message):
    path = write_lines(tmp_path / "p.jsonl", [{"prompt": "p", "chosen": "c", "rejected": "r"}, bad_line])
    with pytest.raises(DataError, match=message):
        load_jsonl(path)


def test_split_by_prompt_never_puts_a_prompt_on_both_sides():
    rng = random.Random(0)
    pairs = [
        PreferencePair(f"prompt {k}", f"a{i}", f"b{i}")
        for i, k in enumerate(rng.choices(range(30), k=200))  # prompts repeat, unevenly
    ]
    for seed in range(5):
        train, val = split_by_prompt(pairs, 0.2, seed)
        assert len(train) + len(val) == len(pairs)
        assert not {p.prompt for p in train} & {p.prompt for p in val}
        assert 0.1 <= len(val) / len(pairs) <= 0.35
    assert split_by_prompt(pairs, 0.2, 1) != split_by_prompt(pairs, 0.2, 2)


def test_split_by_prompt_groups_by_prompt_id_when_given():
    pairs = [PreferencePair(f"text {i}", "a", "b", prompt_id=f"id{i % 4}") for i in range(40)]
    train, val = split_by_prompt(pairs, 0.25, 0)
    assert not {p.prompt_id for p in train} & {p.prompt_id for p in val}


def test_split_by_prompt_refuses_a_single_prompt():
    pairs = [PreferencePair("same prompt", f"a{i}", f"b{i}") for i in range(10)]
    with pytest.raises(DataError, match="share 1 prompt"):
        split_by_prompt(pairs, 0.2, 0)


def test_truncate_keeps_the_end_of_the_prompt_and_the_head_and_tail_of_the_answer():
    prompt, answer = list(range(10)), [100, 101]
    assert truncate(prompt, answer, 50) == (prompt, answer)  # fits: unchanged
    assert truncate(prompt, answer, 5) == ([7, 8, 9], [100, 101])  # short answer: the prompt gets the rest
    long_answer = list(range(100, 120))
    # budget 8: the prompt keeps a quarter (its last 2 tokens), the answer 3 from its head, 3 from its tail
    assert truncate(prompt, long_answer, 8) == ([8, 9], [100, 101, 102, 117, 118, 119])
    assert truncate(prompt, long_answer, 3) == ([], [100, 101, 119])  # a quarter of 3 is no token
    assert truncate([], long_answer, 4) == ([], [100, 101, 118, 119])
    assert truncate(prompt, long_answer, 1) == ([], [100])


def test_encoding_keeps_every_pair_and_the_prompt_in_view(minilm_tokenizer):
    prompt = " ".join(f"w{i}" for i in range(300))  # far longer than max_length
    long_answer = " ".join(["river"] * 80)
    pairs = [
        PreferencePair(prompt, "the cat runs", "a dog"),
        PreferencePair("short prompt", long_answer, "fine"),
    ]
    enc = encode_pairs(pairs, minilm_tokenizer, max_length=32, with_types=True)
    assert len(enc) == 2 and enc.n_truncated == 3  # both rows of pair 0, the long answer of pair 1
    assert all(len(ids) <= 32 for ids in enc.chosen_ids + enc.rejected_ids)
    text = minilm_tokenizer.decode(enc.chosen_ids[0], skip_special_tokens=True)
    assert text.endswith("w299 the cat runs")  # the answer whole, the END of the prompt kept
    assert "w0 " not in text
    ids = enc.chosen_ids[1]  # the answer alone is too long: the (short) prompt stays, the answer is cut
    text = minilm_tokenizer.decode(ids, skip_special_tokens=True)
    assert len(ids) == 32 and text.startswith("short prompt river")
    assert (
        enc.chosen_types[0][0] == 0 and enc.chosen_types[0][-1] == 1
    )  # BERT segment ids: prompt 0, answer 1


def test_a_chat_template_places_prompt_and_answer(minilm_dir):
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(minilm_dir)
    tok.chat_template = "{% for m in messages %}{{ m['role'] }} says {{ m['content'] }} over {% endfor %}"
    template = PairTemplate.from_tokenizer(tok)
    assert template.chat
    enc = encode_pairs([PreferencePair("what is up " * 40, "the sky", "no")], tok, max_length=24)
    text = tok.decode(enc.chosen_ids[0])
    assert len(enc.chosen_ids[0]) <= 24
    assert text.startswith("user says") and text.endswith("up over assistant says the sky over")


def test_length_bucketing_wastes_far_less_on_padding_than_random_batches():
    lengths = np.random.default_rng(0).lognormal(4.5, 0.8, size=2000).astype(int).clip(8, 256)
    bucketed = bucketed_batches(lengths, batch_size=16, seed=0)
    rand = random_batches(len(lengths), batch_size=16, seed=0)
    assert sorted(i for b in bucketed for i in b) == list(range(len(lengths)))  # every pair, once
    assert pad_fraction(bucketed, lengths) < 0.05
    assert pad_fraction(rand, lengths) > 0.3
    assert bucketed_batches(lengths, 16, seed=0) == bucketed  # a resumed run rebuilds the same order
    assert bucketed_batches(lengths, 16, seed=1) != bucketed


def test_token_budget_batches_cover_everything_within_budget():
    lengths = np.array([5, 100, 7, 90, 30, 30, 64])
    batches = token_budget_batches(lengths, max_pairs=3, max_tokens=400)
    assert sorted(i for b in batches for i in b) == list(range(len(lengths)))
    for b in batches:
        assert len(b) <= 3 and (2 * len(b) * lengths[b].max() <= 400 or len(b) == 1)


def test_packed_batches_take_every_pair_once_up_to_the_token_budget():
    tokens = np.random.default_rng(0).integers(20, 400, size=500)
    batches = packed_batches(tokens, max_tokens=4096, seed=[0, 0])
    assert sorted(i for b in batches for i in b) == list(range(len(tokens)))
    assert all(tokens[b].sum() <= 4096 for b in batches)
    # filled: every batch but the last was stopped by a pair that did not fit
    assert all(tokens[b].sum() > 4096 - 400 for b in batches[:-1])
    assert packed_batches(tokens, 4096, seed=[0, 0]) == batches  # a resumed run rebuilds the same order
    assert packed_batches(tokens, 4096, seed=[0, 1]) != batches
    assert packed_batches([5000, 10], 4096, seed=0) in ([[0], [1]], [[1], [0]])  # too long: alone


def test_collate_packed_puts_rows_end_to_end_with_restarting_positions(minilm_tokenizer):
    pairs = [PreferencePair("p one", "a b c d e f", "x", margin=1.0), PreferencePair("p", "y", "z z")]
    enc = encode_pairs(pairs, minilm_tokenizer, max_length=32)
    rows = [enc.chosen_ids[0], enc.chosen_ids[1], enc.rejected_ids[0], enc.rejected_ids[1]]
    total = sum(len(r) for r in rows)
    batch = collate_packed(enc, [0, 1], multiple=16)
    width = batch["input_ids"].shape[1]
    assert batch["input_ids"].shape == batch["position_ids"].shape == (1, width)
    assert width % 16 == 0 and total <= width < total + 16
    assert batch["input_ids"][0, :total].tolist() == [t for r in rows for t in r]
    assert (batch["input_ids"][0, total:] == enc.pad_id).all()
    longest = max(len(r) for r in rows)
    expected = [p for r in rows for p in range(len(r))] + [p % longest for p in range(width - total)]
    assert batch["position_ids"][0].tolist() == expected
    # a compiled run pads to the token budget: the tail never numbers past the longest row (it ran past
    # GPT-2's 512 learned positions and the run failed with an IndexError)
    wide = collate_packed(enc, [0, 1], width=2000)
    assert wide["input_ids"].shape == (1, 2000) and int(wide["position_ids"].max()) == longest - 1
    assert batch["ends"].tolist() == (np.cumsum([len(r) for r in rows]) - 1).tolist()
    assert batch["margin"].tolist() == [1.0, 0.0] and batch["length"].shape == (4,)
    assert collate_packed(enc, [0, 1])["input_ids"].shape == (1, total)  # no multiple: no tail
    assert (packed_multiple("cuda"), packed_multiple("cpu")) == (1024, 1)


def test_collate_stacks_chosen_then_rejected_with_right_padding(minilm_tokenizer):
    pairs = [
        PreferencePair("p one", "a b c d e f", "x", margin=1.0),
        PreferencePair("p", "y", "z z", weight=0.5),
    ]
    enc = encode_pairs(pairs, minilm_tokenizer, 64)
    batch = collate(enc, [0, 1])
    assert batch["input_ids"].shape == batch["attention_mask"].shape == (4, max(enc.lengths))  # (2B, T)
    rows = enc.chosen_ids + enc.rejected_ids
    for k, r in enumerate(rows):
        assert batch["attention_mask"][k].sum() == len(r)
        assert batch["input_ids"][k, : len(r)].tolist() == r
        assert (batch["input_ids"][k, len(r) :] == minilm_tokenizer.pad_token_id).all()
    assert batch["margin"].tolist() == [1.0, 0.0] and batch["weight"].tolist() == [1.0, 0.5]
    assert batch["length"].tolist() == [11.0, 1.0, 1.0, 3.0]  # answer characters: chosen, then rejected


def test_padded_width_rounds_up_to_the_multiple_but_not_past_the_cap():
    assert padded_width(37) == 37 and padded_width(37, 1, 64) == 37
    assert padded_width(37, 16, 128) == 48 and padded_width(48, 16, 128) == 48
    assert padded_width(120, 16, 126) == 126  # a position table ending at max_length
    assert padded_width(130, 16, 126) == 130  # never shorter than the longest row
    assert (width_multiple("cuda"), width_multiple("cpu"), width_multiple("cuda", 8)) == (16, 1, 8)


def test_collate_pads_to_the_multiple_and_keeps_every_row(minilm_tokenizer):
    pairs = [PreferencePair("p one", "a b c d e f", "x"), PreferencePair("p", "y", "z z")]
    enc = encode_pairs(pairs, minilm_tokenizer, 64)
    plain, padded = collate(enc, [0, 1]), collate(enc, [0, 1], multiple=16, cap=64)
    assert padded["input_ids"].shape == (4, 16) and plain["input_ids"].shape[1] < 16
    width = plain["input_ids"].shape[1]
    for key in ("input_ids", "attention_mask", "token_type_ids"):
        if key in plain:
            assert (padded[key][:, :width] == plain[key]).all()
    assert (padded["attention_mask"][:, width:] == 0).all()
    assert (padded["input_ids"][:, width:] == minilm_tokenizer.pad_token_id).all()


def test_a_file_not_in_utf8_or_in_parquet_is_named_with_its_line(tmp_path):
    """The decoder's own message named neither file nor line; a Parquet export read as text said
    "'utf-8' codec can't decode byte 0xcc"."""
    bad = tmp_path / "bad.jsonl"
    bad.write_bytes(b'{"prompt": "p", "chosen": "c", "rejected": "r"}\n{"prompt": "\xff"}\n')
    with pytest.raises(DataError, match="bad.jsonl: line 2: not UTF-8"):
        load_jsonl(bad)
    parquet = tmp_path / "export.parquet"
    parquet.write_bytes(b"PAR1" + b"\x00" * 20)
    with pytest.raises(DataError, match="a Parquet file; the trainer reads JSONL"):
        load_jsonl(parquet)


def test_rows_from_simulated_raters_are_counted_in_a_warning(tmp_path, caplog):
    """The export marks them (`simulated`, `n_simulated`); they trained on a real model without a word."""
    rows = [
        {"prompt": "p", "chosen": "c", "rejected": "r", "simulated": True},
        {"prompt": "p", "chosen": "c", "rejected": "r", "n_simulated": 2},
        {"prompt": "p", "chosen": "c", "rejected": "r", "simulated": False},
    ]
    path = write_lines(tmp_path / "e.jsonl", rows)
    with caplog.at_level("WARNING", logger="rewardtrainer.data"):
        assert len(load_jsonl(path)) == 3
    assert "2 of 3 rows come from simulated raters" in caplog.text
