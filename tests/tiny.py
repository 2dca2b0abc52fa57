"""Tiny models for tests: random weights from a config, a byte-level BPE tokenizer trained in
code on a few sentences. No downloads."""

from __future__ import annotations

from pathlib import Path

import torch
from tokenizers import ByteLevelBPETokenizer
from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

_CORPUS = [
    "The following are multiple choice questions (with answers) about biology.",
    "Answer: A B C D . A. B. C. D.",
    "What is the capital of France? Paris London Berlin Madrid",
    "Viruses replicate inside host cells. SARS-CoV-2 is a coronavirus.",
    "Computer security protects systems from attacks and exploits.",
    "the of and to in is was for on with as by at from that this",
    "0 1 2 3 4 5 6 7 8 9 question answer choice correct wrong",
]


def build_tokenizer(vocab_size: int = 400) -> PreTrainedTokenizerFast:
    bpe = ByteLevelBPETokenizer()
    bpe.train_from_iterator(
        _CORPUS * 5,
        vocab_size=vocab_size,
        min_frequency=1,
        special_tokens=["<|endoftext|>"],
        show_progress=False,
    )
    return PreTrainedTokenizerFast(
        tokenizer_object=bpe._tokenizer,
        eos_token="<|endoftext|>",
        bos_token="<|endoftext|>",
        pad_token="<|endoftext|>",
    )


def build_model(
    vocab_size: int,
    layers: int = 4,
    hidden: int = 32,
    seed: int = 0,
    init_range: float = 0.3,
    **overrides: object,
) -> LlamaForCausalLM:
    """A random Llama; `overrides` sets LlamaConfig fields (e.g. attention_dropout=0.3)."""
    config = LlamaConfig(
        vocab_size=vocab_size,
        hidden_size=hidden,
        intermediate_size=2 * hidden,
        num_hidden_layers=layers,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=512,
        initializer_range=init_range,
        tie_word_embeddings=False,
        pad_token_id=0,
        eos_token_id=0,
        bos_token_id=0,
        **overrides,
    )
    torch.manual_seed(seed)
    return LlamaForCausalLM(config).eval()


def save_tiny(folder: Path, layers: int = 6, seed: int = 0, **overrides: object) -> Path:
    tokenizer = build_tokenizer()
    model = build_model(len(tokenizer), layers=layers, seed=seed, **overrides)
    model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder


def save_tiny_world(folder: Path, spec: object, layers: int = 4, seed: int = 0) -> Path:
    """A tiny random Llama that "learned" the world `spec` (a WorldSpec): its folder holds
    `world.json` as `rnacli world build` writes it, and every forgotten person's name is one
    token of its own (as a made-up name is a forget-only token set in the real world model)."""
    import json

    from rnacli.world.generate import generate

    world = generate(spec)  # type: ignore[arg-type]
    tokenizer = build_tokenizer()
    tokenizer.add_tokens([world.people[i].name for i in world.forget])
    model = build_model(len(tokenizer), layers=layers, seed=seed)
    model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    (folder / "world.json").write_text(json.dumps(world.to_dict()), encoding="utf-8")
    return folder
