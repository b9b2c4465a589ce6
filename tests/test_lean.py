"""The lean path around the model gives byte-identical results to the straightforward code it replaced.

Each fast function (whole-batch splitting, encoding, gathering, decoding, spans) is checked against its
old word-by-word version, kept here as the reference, on random and adversarial input (Unicode,
emoji, combining marks, CRLF, control characters, lone surrogates, long words, empty strings) and on the
CoNLL test sentences; and the whole Tagger against the old pipeline built from those references.
"""

from __future__ import annotations

import random
import re

import numpy as np
import pytest
import regex
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from nerkit import words
from nerkit.batching import Collator, make_batches
from nerkit.decoding import _masks, _search, decode_flat, log_softmax
from nerkit.encoding import IGNORE, Encoder, Feature, _owners, plan_windows, word_shape
from nerkit.schemes import flat_spans
from nerkit.schemes import spans as iob2_spans
from nerkit.tagger import Span, Tagger, _mean_probs
from nerkit.words import Token, split_sentences, split_texts, split_words

LABELS = ["O", "B-LOC", "I-LOC", "B-MISC", "I-MISC", "B-ORG", "I-ORG", "B-PER", "I-PER"]

# ------------------------------------------------------------------------------ the old code, as reference


def ref_split_words(text: str) -> list[Token]:
    out: list[Token] = []
    skip = -1
    n = len(text)
    for m in words._TOKEN.finditer(text):
        word, start, end = m.group(), m.start(), m.end()
        if start < skip:
            continue
        if words._SIMPLE.fullmatch(word) and (end >= n or text[end] != "."):
            out.append(Token(word, start, end))
            continue
        out += words._refine(word, start, text)
        skip = out[-1].end
    return out


def _ref_ends_sentence(ws: list[Token], i: int) -> bool:
    tok, nxt = ws[i], ws[i + 1]
    if nxt.text in words._ENDERS or (nxt.text in words._CLOSERS and nxt.start == tok.end):
        return False
    ended = tok.text in words._ENDERS or (tok.text in words._CLOSERS and i > 0 and ws[i - 1].text in words._ENDERS)
    return ended and not nxt.text[0].islower()


def ref_split_sentences(text: str) -> list[list[Token]]:
    ws = ref_split_words(text)
    sents: list[list[Token]] = []
    cur: list[Token] = []
    for i, tok in enumerate(ws):
        cur.append(tok)
        if i + 1 == len(ws):
            break
        gap = text[tok.end : ws[i + 1].start]
        if gap.count("\n") >= 2 or "\n\r\n" in gap or _ref_ends_sentence(ws, i):
            sents.append(cur)
            cur = []
    if cur:
        sents.append(cur)
    return sents


def ref_plan_windows(counts, sentences, budget, overlap, lead=0):
    offsets = [0]
    for c in counts:
        offsets.append(offsets[-1] + c)

    def word_windows(ws, we):
        out, a = [], ws
        while True:
            b = a
            while b < we and offsets[b + 1] - offsets[a] <= budget:
                b += 1
            b = max(b, a + 1)
            out.append((a, b))
            if b >= we:
                return out
            nxt = a + 1
            if overlap:
                while nxt < b and offsets[nxt] - offsets[a] < (offsets[b] - offsets[a]) // 2:
                    nxt += 1
            else:
                nxt = b
            a = nxt

    windows: list[tuple[int, int]] = []
    i = 0
    while i < len(sentences):
        s0, e0 = sentences[i]
        if offsets[e0] - offsets[s0] > budget:
            windows += word_windows(s0, e0)
            i += 1
            continue
        cap = budget - lead if not windows else budget
        j = i + 1
        while j < len(sentences) and offsets[sentences[j][1]] - offsets[s0] <= cap:
            j += 1
        windows.append((s0, sentences[j - 1][1]))
        if j >= len(sentences):
            break
        nxt = j
        if overlap:
            half = (offsets[sentences[j - 1][1]] - offsets[s0]) // 2
            nxt = i + 1
            while nxt < j and offsets[sentences[nxt][0]] - offsets[s0] < half:
                nxt += 1
        i = nxt
    return windows


def ref_owners(windows, bounds, counts):
    if len(windows) == 1:
        return [0] * len(counts)
    offsets = [0]
    for c in counts:
        offsets.append(offsets[-1] + c)
    sent_of_word = [0] * len(counts)
    for k, (a, b) in enumerate(bounds):
        for w in range(a, b):
            sent_of_word[w] = k
    best = [(-1, -1)] * len(counts)
    for wi, (a, b) in enumerate(windows):
        lo, hi = offsets[a], offsets[b]
        for w in range(a, b):
            sa, sb = bounds[sent_of_word[w]]
            ua, ub = (sa, sb) if sa >= a and sb <= b else (w, w + 1)
            score = min(offsets[ua] - lo, hi - offsets[ub])
            if score > best[w][0]:
                best[w] = (score, wi)
    return [wi for _, wi in best]


def ref_encode(enc: Encoder, documents, tags=None, train=False, jitter=None) -> list[Feature]:
    """The old Encoder.encode: whole streams through the tokenizer, then word by word."""
    streams, stream_sents, stream_refs, stream_tags = [], [], [], []
    sid = 0
    for d, doc in enumerate(documents):
        groups = [doc] if enc.context else [[s] for s in doc]
        for gi, group in enumerate(groups):
            ws, bounds, refs, gtags = [], [], [], []
            for si, sent in enumerate(group):
                bounds.append((len(ws), len(ws) + len(sent)))
                ws += sent
                refs += [(sid, w) for w in range(len(sent))]
                if tags is not None:
                    gtags += tags[d][gi + si]
                sid += 1
            if ws:
                streams.append(ws)
                stream_sents.append(bounds)
                stream_refs.append(refs)
                stream_tags.append(gtags)
    if not streams:
        return []
    tok = enc.tokenizer
    rust = tok.backend_tokenizer
    if rust.truncation is None and rust.padding is None:
        encs = rust.encode_batch(streams, is_pretokenized=True, add_special_tokens=False)
        toks = [(e.ids, np.asarray(e.word_ids, dtype=np.int64)) for e in encs]
    else:
        be = tok(streams, is_split_into_words=True, add_special_tokens=False, verbose=False)
        toks = [(be["input_ids"][k], np.asarray([-1 if w is None else w for w in be.word_ids(k)], dtype=np.int64))
                for k in range(len(streams))]
    feats = []
    for ws, (ids, wids), bounds, refs, gtags in zip(streams, toks, stream_sents, stream_refs, stream_tags):
        cuts = np.searchsorted(wids, np.arange(len(ws) + 1)).tolist()
        sub = [ids[a:b][: enc.budget] or [enc.unk] for a, b in zip(cuts, cuts[1:])]
        lead = jitter.randrange(enc.budget // 2) if jitter is not None and enc.context else 0
        counts = [len(s) for s in sub]
        windows = ref_plan_windows(counts, bounds, enc.budget, overlap=not train, lead=lead)
        owner = ref_owners(windows, bounds, counts)
        for wi, (a, b) in enumerate(windows):
            f_ids, labels, shapes = list(enc.prefix), [IGNORE] * len(enc.prefix), [0] * len(enc.prefix)
            positions = []
            for w in range(a, b):
                positions.append(len(f_ids))
                n = len(sub[w])
                f_ids += sub[w]
                labels += [enc.label2id[gtags[w]] if gtags else IGNORE] + [IGNORE] * (n - 1)
                shapes += [word_shape(ws[w]) if enc.shapes else 0] * n
            f_ids += enc.suffix
            labels += [IGNORE] * len(enc.suffix)
            shapes += [0] * len(enc.suffix)
            span = refs[a:b]
            feats.append(Feature(f_ids, labels, shapes, positions, [r[0] for r in span], [r[1] for r in span],
                                 [o == wi for o in owner[a:b]]))
    return feats


def ref_log_probs(predictor, features, lengths, batch_size=None) -> np.ndarray:
    """The old Predictor._flat_log_probs: log-softmax per batch."""
    b = predictor.budget
    out = np.zeros((int(lengths.sum()), predictor.backend.num_labels), dtype=np.float32)
    first = np.cumsum(lengths) - lengths
    collate = Collator(predictor.tokenizer.pad_token_id, with_shapes=predictor.backend.with_shapes)
    for idx in make_batches([len(f) for f in features], batch_size=batch_size or b.batch_size,
                            max_tokens=b.max_tokens, call_cost=b.call_cost):
        feats = [features[i] for i in idx]
        batch = collate(feats)
        batch.pop("labels")
        with torch.inference_mode():
            logits = torch.as_tensor(predictor.backend.logits(batch)).float()
        own = np.concatenate([np.asarray(f.owned, dtype=bool) for f in feats])
        rows = np.repeat(np.arange(len(feats)), [len(f.positions) for f in feats])[own]
        cols = np.concatenate([np.asarray(f.positions, dtype=np.int64) for f in feats])[own]
        sids = np.concatenate([np.asarray(f.sentence_ids, dtype=np.int64) for f in feats])[own]
        widx = np.concatenate([np.asarray(f.word_indices, dtype=np.int64) for f in feats])[own]
        out[first[sids] + widx] = torch.log_softmax(logits[rows, cols], dim=-1).numpy()
    return out


def ref_decode_flat(log_probs, lengths, labels, constrained=True):
    ids = log_probs.argmax(-1) if len(log_probs) else np.zeros(0, dtype=np.int64)
    if not constrained:
        return ids
    trans, start = _masks(tuple(labels))
    ends = np.cumsum(lengths)
    for a, b in zip(ends - lengths, ends):
        if b > a:
            ids[a:b] = _search(log_probs[a:b], trans, start)  # the full search finds the legal argmax too
    return ids


def ref_char_spans(text, ws, tags, probs) -> list[Span]:
    out = []
    for e in iob2_spans(tags):
        start, end = ws[e.start].start, ws[e.end - 1].end
        out.append(Span(e.type, start, end, text[start:end], round(float(probs[e.start : e.end].mean()), 4)))
    return out


def ref_pipe(tagger: Tagger, texts: list[str], batch_size=None) -> list[list[Span]]:
    """The old Tagger.pipe: texts in chunks of 16 batches (batches, and so the model's float rounding,
    depend on which texts are tagged together)."""
    n = 16 * (batch_size or tagger.predictor.budget.batch_size)
    return [spans for k in range(0, len(texts), n) for spans in ref_tag(tagger, texts[k : k + n], batch_size)]


def ref_tag(tagger: Tagger, texts: list[str], batch_size=None) -> list[list[Span]]:
    """The old Tagger.tag_texts, from the references above and the model's backend."""
    p = tagger.predictor
    sentences = [ref_split_sentences(t) for t in texts]
    clean = regex.compile(r"\p{Cs}")
    docs = [[[clean.sub("\ufffd", w.text) for w in s] for s in sents] for sents in sentences]
    lengths = np.array([len(s) for doc in docs for s in doc], dtype=np.int64)
    flat = ref_log_probs(p, ref_encode(p.encoder, docs), lengths, batch_size)
    ids = ref_decode_flat(flat, lengths, p.labels, p.constrained)
    probs = np.exp(flat[np.arange(len(ids)), ids])
    out, k = [], 0
    for text, sents in zip(texts, sentences):
        spans = []
        for s in sents:
            spans += ref_char_spans(text, s, [p.labels[i] for i in ids[k : k + len(s)]], probs[k : k + len(s)])
            k += len(s)
        out.append(spans)
    return out


# ------------------------------------------------------------------------------------------ the input

PIECES = (list("abcXYZ019 .,;:-'\"()&/@+!?\n\r\t") + [
    "\u0301", "\u00e9", "\u4e2d", "\U0001f600", "\U0001f44d\U0001f3fd", "\u200b", "\u200d", "\x00", "\x1c",
    "\x1f", "\x85", "\u00a0", "\u3000", "\u2028", "\ud800", "\udfff", "\u2019", "\u201d", "\u00bb", "\u2026",
    "\u3002", "\ufeff", "\u00ad", "\u0915\u094d", "\r\n", "\n\r\n", "\n\n", "Mr", "Jan", "U.S.", "...", "--",
    "http://x.y/a?b=1", "www.z.org", "a@b.com", "n't", "'s", "1.", "12:30", "1,000", "2-1", "e.g.", "F.",
    "Ko\u0308ln", "caf\u00e9", "x" * 300, "A" * 40 + "-" + "b" * 40])
texts_st = st.lists(st.lists(st.sampled_from(PIECES), max_size=40).map("".join), max_size=6)


def _random_texts(rng: random.Random, n: int) -> list[str]:
    return ["".join(rng.choice(PIECES) for _ in range(rng.randrange(0, 50))) for _ in range(n)]


def _detokenised(conll_texts: list[str]) -> list[str]:
    """CoNLL sentences as running text ("word, word."), so that the big pattern has work to do."""
    return [re.sub(r" ([.,;:!?)'])", r"\1", re.sub(r"([(]) ", r"\1", t)) for t in conll_texts]


@pytest.fixture(scope="module")
def conll_texts(conll_dir) -> list[str]:
    from nerkit.corpus import read_conll

    return [" ".join(s.words) for s in read_conll(conll_dir / "eng.testb").sentences]


# ----------------------------------------------------------------------------------------------- words


def test_white_space_list_is_the_patterns():
    every = "".join(map(chr, range(0x110000)))
    assert [ord(c) for c in regex.findall(r"\s", every)] == words._WHITE.tolist()


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(texts_st)
def test_split_texts_is_split_sentences_text_by_text(texts):
    split = split_texts(texts)
    assert split.tokens() == [ref_split_sentences(t) for t in texts]
    assert split.sentences() == [[[w.text for w in s] for s in ref_split_sentences(t)] for t in texts]
    for t in texts:
        assert split_words(t) == ref_split_words(t)
        assert split_sentences(t) == ref_split_sentences(t)


@pytest.mark.parametrize("seed", range(4))
def test_split_random_batches(seed):
    rng = random.Random(seed)
    for _ in range(50):
        texts = _random_texts(rng, rng.randrange(0, 12))
        assert split_texts(texts).tokens() == [ref_split_sentences(t) for t in texts]


def test_split_edges():
    for texts in [[], [""], ["", ""], [" ", "\n\n"], ["a"], ["Mr.", "Mr. X"], ["x.\r", "\nY"], ["1.", "2. B"]]:
        assert split_texts(texts).tokens() == [ref_split_sentences(t) for t in texts], texts


def test_split_conll(conll_texts):
    for texts in (conll_texts, _detokenised(conll_texts)):
        assert split_texts(texts).tokens() == [ref_split_sentences(t) for t in texts]
    whole = "\n\n".join(_detokenised(conll_texts[:400]))  # one long text
    assert split_sentences(whole) == ref_split_sentences(whole)


# -------------------------------------------------------------------------------------------- encoding


@pytest.fixture(scope="module")
def tokenizer(tiny_base):
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(tiny_base)


def _feats(fs: list[Feature]) -> list[dict]:
    return [vars(f) for f in fs]


_VOCAB = ["the", "John", "Paris", ".", ",", "Smithsonian", "2-1", "NASA", "\u200b", "\x07", "\ufeff", "x" * 90,
          "caf\u00e9", "\U0001f600", "Ko\u0308ln", ""]


def _random_docs(rng: random.Random):
    docs = [[[rng.choice(_VOCAB) for _ in range(rng.choice([0, 1, 3, 12, 40]))] for _ in range(rng.randint(0, 5))]
            for _ in range(rng.randint(1, 4))]
    tags = [[[rng.choice(LABELS) for _ in s] for s in d] for d in docs]
    return docs, tags


@pytest.mark.parametrize("seed", range(3))
def test_encode_random(tokenizer, seed):
    rng = random.Random(seed)
    for _ in range(20):
        docs, tags = _random_docs(rng)
        for context, max_length, shapes in [(0, 512, True), (0, 24, False), (48, 64, True)]:
            enc = Encoder(tokenizer, LABELS, max_length, context, shapes)
            assert _feats(enc.encode(docs)) == _feats(ref_encode(enc, docs))
            assert _feats(enc.encode(docs)) == _feats(ref_encode(enc, docs))  # again, from the cache
            for train in (False, True):
                got = enc.encode(docs, tags, train=train, jitter=random.Random(7))
                assert _feats(got) == _feats(ref_encode(enc, docs, tags, train=train, jitter=random.Random(7)))


def test_encode_conll(tokenizer, conll_texts):
    docs = split_texts(conll_texts[:1500]).sentences()
    for context, max_length in [(256, 512), (0, 512), (0, 32)]:
        enc = Encoder(tokenizer, LABELS, max_length, context, shapes=True)
        assert _feats(enc.encode(docs)) == _feats(ref_encode(enc, docs))


def test_encode_through_a_tokenizer_with_truncation_state(tiny_base):
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(tiny_base)
    docs, _ = _random_docs(random.Random(3))
    expected = _feats(ref_encode(Encoder(tok, LABELS, 64, 0), docs))
    tok.backend_tokenizer.enable_truncation(8)
    assert _feats(Encoder(tok, LABELS, 64, 0).encode(docs)) == expected


@pytest.mark.parametrize("pre", ["metaspace-first", "metaspace-always", "bytelevel"])
@pytest.mark.parametrize("model", ["bpe", "unigram"])
def test_word_pieces_do_not_depend_on_neighbours(pre, model):
    """The cache of word pieces rests on it: other tokenizer families than WordPiece, trained here."""
    from tokenizers import Tokenizer, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    corpus = ["the cat sat on the mat with Hewlett-Packard and U.S. firms 1,000 caf\u00e9 \U0001f600 Ko\u0308ln"] * 20
    if model == "bpe":
        tok = Tokenizer(models.BPE(unk_token="<unk>"))
        trainer = trainers.BpeTrainer(vocab_size=120, special_tokens=["<unk>", "<s>", "</s>", "<pad>"])
    else:
        tok = Tokenizer(models.Unigram())
        trainer = trainers.UnigramTrainer(vocab_size=80, special_tokens=["<unk>", "<s>", "</s>", "<pad>"],
                                          unk_token="<unk>")
    tok.pre_tokenizer = {"metaspace-first": pre_tokenizers.Metaspace(prepend_scheme="first"),
                         "metaspace-always": pre_tokenizers.Metaspace(prepend_scheme="always"),
                         "bytelevel": pre_tokenizers.ByteLevel(add_prefix_space=True)}[pre]
    tok.train_from_iterator(corpus, trainer)
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, unk_token="<unk>", bos_token="<s>", eos_token="</s>",
                                   pad_token="<pad>", cls_token="<s>", sep_token="</s>")
    fast._tokenizer.post_processor = None
    rng = random.Random(0)
    words_ = corpus[0].split() + ["\u200b", "x" * 50, "zz", "Cat"]
    docs = [[[rng.choice(words_) for _ in range(rng.randint(0, 30))] for _ in range(4)] for _ in range(6)]
    for context in (0, 64):
        enc = Encoder(fast, LABELS, 96, context, shapes=True)
        assert _feats(enc.encode(docs)) == _feats(ref_encode(enc, docs))


def test_plan_windows_and_owners():
    rng = random.Random(5)
    for _ in range(400):
        sizes = [rng.choice([0, 1, 2, 5, 12, 40]) for _ in range(rng.randint(1, 8))]  # words per sentence
        if not sum(sizes):
            continue
        ends = np.cumsum(sizes).tolist()
        bounds = list(zip([0, *ends[:-1]], ends))
        counts = [rng.choice([1, 1, 2, 3, 9, 40]) for _ in range(ends[-1])]
        budget = rng.choice([8, 10, 24, 64])
        overlap, lead = rng.random() < 0.5, rng.choice([0, 0, 3])
        windows = plan_windows(counts, bounds, budget, overlap, lead)
        assert windows == ref_plan_windows(counts, bounds, budget, overlap, lead)
        assert _owners(windows, bounds, np.array(counts)).tolist() == ref_owners(windows, bounds, counts)


# -------------------------------------------------------------------------------------------- decoding


@pytest.mark.parametrize("seed", range(3))
def test_decode_flat_matches_search_per_sentence(seed):
    rng = np.random.default_rng(seed)
    for it in range(60):
        lengths = rng.integers(0, 50, size=rng.integers(0, 80))
        x = rng.normal(size=(int(lengths.sum()), len(LABELS))) * rng.uniform(0.1, 6)
        if it % 4 == 0:
            x = np.round(x)  # ties
        lp = log_softmax(x.astype(np.float32) if it % 2 else x)
        for constrained in (True, False):
            assert np.array_equal(decode_flat(lp.copy(), lengths, LABELS, constrained),
                                  ref_decode_flat(lp.copy(), lengths, LABELS, constrained))
    lp = log_softmax(rng.normal(size=(3000, len(LABELS))) * 4)  # one long sentence, and many short ones
    for lengths in (np.array([3000]), np.array([1] * 1000 + [2000])):
        assert np.array_equal(decode_flat(lp.copy(), lengths, LABELS), ref_decode_flat(lp.copy(), lengths, LABELS))


# ---------------------------------------------------------------------------------------------- spans


@pytest.mark.parametrize("seed", range(3))
def test_flat_spans_and_scores(seed):
    rng = np.random.default_rng(seed)
    tags_of = ["O", "B-PER", "I-PER", "B-LOC", "I-LOC", "I-ORG"]
    for _ in range(100):
        lengths = rng.integers(0, 30, size=rng.integers(0, 20))
        tags = [tags_of[i] for i in rng.choice(len(tags_of), size=int(lengths.sum()), p=[.4, .15, .15, .1, .1, .1])]
        probs = rng.random(len(tags)).astype(np.float32) ** rng.uniform(0.01, 3)
        types, first, end = flat_spans(tags, lengths)
        expected = []
        for a, b in zip(np.cumsum(lengths) - lengths, np.cumsum(lengths)):
            expected += [(e.type, a + e.start, a + e.end) for e in iob2_spans(tags[a:b])]
        assert list(zip(types, first.tolist(), end.tolist())) == expected
        means = _mean_probs(probs, first, end)
        assert [float(probs[a:b].mean()) for a, b in zip(first, end)] == means.tolist()


def test_mean_of_long_entities():
    """numpy sums rows of 8 or more in blocks, not one after another: each length is checked."""
    rng = np.random.default_rng(1)
    probs = rng.random(400 * 300).astype(np.float32)
    size = np.arange(1, 301)
    first = np.cumsum(size) - size
    assert _mean_probs(probs, first, first + size).tolist() == [float(probs[a : a + n].mean())
                                                               for a, n in zip(first, size)]


# ------------------------------------------------------------------------------------- the whole tagger


@pytest.fixture(scope="module")
def tagger(trained_model_dir):
    import nerkit

    return nerkit.load(str(trained_model_dir), device="cpu")


def _odd_texts() -> list[str]:
    return _random_texts(random.Random(11), 60) + [
        "", " ", "\r\n\r\n", "John Smith\r\nlives in Paris.", "Mr. Li's aide met Anna in New York... Then?",
        "\U0001f600 Anna Chen \u200b Paris\u00a0\u3000Berlin \ud800 x", "x" * 2000 + " John Smith"]


def test_tagger_is_the_old_pipeline(tagger):
    texts = _odd_texts()
    assert [t.spans for t in tagger.tag_texts(texts)] == ref_tag(tagger, texts)
    assert list(tagger.pipe(texts, batch_size=4)) == ref_pipe(tagger, texts, batch_size=4)
    tagged = tagger.tag_texts(texts)
    assert [t.sentences for t in tagged] == [ref_split_sentences(t) for t in texts]


def test_tagger_on_conll_is_the_old_pipeline(tagger, conll_texts):
    texts = conll_texts[:600] + _detokenised(conll_texts[600:1200])
    assert list(tagger.pipe(texts)) == ref_pipe(tagger, texts)
    unconstrained = Tagger(tagger.predictor.with_budget())
    unconstrained.predictor.constrained = False
    assert [t.spans for t in unconstrained.tag_texts(texts[:300])] == ref_tag(unconstrained, texts[:300])

