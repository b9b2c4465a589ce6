"""A tiny random-initialised BERT with a WordPiece vocabulary trained on the fly, and a synthetic tagged corpus:
for tests, demos and GPU checks where no pretrained weights or licensed data can be had. Builds in well under a
second."""

from __future__ import annotations

import os
import random
from pathlib import Path

FIRST = ["John", "Mary", "Peter", "Anna", "Ahmed", "Li", "Carlos", "Olga"]
LAST = ["Smith", "Jones", "Brown", "Garcia", "Chen", "Ivanova", "Okafor", "Muller"]
CITIES = ["Paris", "London", "Berlin", "Tokyo", "Nairobi", "Lima", "New York", "Sao Paulo"]
ORGS = ["Reuters", "Siemens", "the United Nations", "Acme Corp", "Toyota", "FIFA", "Google", "BBC"]
MISC = ["German", "French", "Olympic", "English", "Japanese", "Christmas"]
TEMPLATES = [
    "{PER} lives in {LOC} .",
    "{PER} works for {ORG} in {LOC} .",
    "{ORG} said on Monday that {PER} will visit {LOC} .",
    "The {MISC} team beat {ORG} 2-1 .",
    "{PER} , a {MISC} citizen , joined {ORG} last year .",
    "Shares of {ORG} rose 3 percent in {LOC} trading .",
    "it rained in {LOC} and {LOC} all week .",
]


def synthetic_sentences(n: int, seed: int = 0) -> list[list[tuple[str, str]]]:
    """IOB2-tagged (word, tag) sentences from templates in the four CoNLL types; enough signal for a tiny
    model to learn in seconds, and no licensed data."""
    rng = random.Random(seed)
    fill = {"PER": lambda: f"{rng.choice(FIRST)} {rng.choice(LAST)}", "LOC": lambda: rng.choice(CITIES),
            "ORG": lambda: rng.choice(ORGS), "MISC": lambda: rng.choice(MISC)}
    out = []
    for _ in range(n):
        sent: list[tuple[str, str]] = []
        for tok in rng.choice(TEMPLATES).split():
            if tok.startswith("{") and tok.endswith("}"):
                typ = tok[1:-1]
                words = fill[typ]().split()
                sent += [(w, ("B-" if i == 0 else "I-") + typ) for i, w in enumerate(words)]
            else:
                sent.append((tok, "O"))
        out.append(sent)
    return out


def conll_text(sentences: list[list[tuple[str, str]]], docs_every: int = 0) -> str:
    """CoNLL lines ("word POS chunk tag"), a -DOCSTART- line every `docs_every` sentences (0: none)."""
    lines: list[str] = []
    for i, sent in enumerate(sentences):
        if docs_every and i % docs_every == 0:
            lines += ["-DOCSTART- -X- -X- O", ""]
        lines += [f"{w} NN O {t}" for w, t in sent] + [""]
    return "\n".join(lines) + "\n"


def build_tiny_model(
    out_dir: str | os.PathLike,
    words: list[str],
    vocab_size: int = 2000,
    hidden: int = 64,
    layers: int = 2,
    heads: int = 2,
    lowercase: bool = False,
    seed: int = 0,
) -> Path:
    """Write a BERT folder (config, random weights, fast tokenizer) that `build_model` can fine-tune."""
    import torch
    from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers, processors, trainers
    from transformers import BertConfig, BertForMaskedLM, PreTrainedTokenizerFast

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    special = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
    tok = Tokenizer(models.WordPiece(unk_token="[UNK]"))
    tok.normalizer = normalizers.BertNormalizer(lowercase=lowercase)
    tok.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    tok.decoder = decoders.WordPiece()
    tok.train_from_iterator(words, trainers.WordPieceTrainer(vocab_size=vocab_size, special_tokens=special))
    cls, sep = tok.token_to_id("[CLS]"), tok.token_to_id("[SEP]")
    tok.post_processor = processors.TemplateProcessing(
        single="[CLS] $A [SEP]", pair="[CLS] $A [SEP] $B:1 [SEP]:1", special_tokens=[("[CLS]", cls), ("[SEP]", sep)]
    )
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tok, unk_token="[UNK]", pad_token="[PAD]", cls_token="[CLS]", sep_token="[SEP]",
        mask_token="[MASK]", model_max_length=128,
    )
    fast.save_pretrained(out)
    torch.manual_seed(seed)
    config = BertConfig(
        vocab_size=tok.get_vocab_size(), hidden_size=hidden, num_hidden_layers=layers, num_attention_heads=heads,
        intermediate_size=hidden * 4, max_position_embeddings=128, pad_token_id=0,
    )
    BertForMaskedLM(config).save_pretrained(out)
    return out
