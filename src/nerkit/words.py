"""Raw text -> sentences of words with character offsets, split the way CoNLL-2003 was.

The model was trained on CoNLL-style tokens, so raw text is cut the same way: punctuation split off,
hyphenated names ("Hewlett-Packard", "2-1") and dotted acronyms ("U.S.") kept whole, clitics ("'s",
"n't") split off as in the Penn Treebank. Every word keeps its offsets, so text[start:end] is the word.

Separators are skipped, never rewritten: whitespace, control characters, zero-width spaces and lone
surrogates (which a Rust tokenizer cannot take) fall between words, so offsets stay valid on any input.

`split_texts` splits many texts in one pass, which is what the tagger uses: the text is cut at white space
first, and only chunks other than plain ASCII words go through the big pattern; sentence breaks are found
with numpy, Python looking only at the few words that end a sentence.
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from dataclasses import dataclass
from typing import NamedTuple

import numpy as np
import regex

# Word characters: letters, combining marks (decomposed accents, Indic vowel signs), digits, "_", and
# the joiners that live inside words (soft hyphen, ZWNJ, ZWJ).
_W = r"[\p{L}\p{M}\p{N}_\u00ad\u200c\u200d]"
_HYPHEN = r"[-\u2010\u2011]"
_APOS = r"['\u2019]"
_SEP = r"[\s\p{Cc}\p{Cs}\p{Zs}\p{Zl}\p{Zp}\u200b\u2060\ufeff]"

_TOKEN = regex.compile(
    rf"""
    (?:https?://|www\.)[^\s<>"]*[^\s<>".,;:!?)\]}}'\u2019\u201d]   # URL, minus trailing punctuation
  | [\p{{L}}\p{{N}}._%+-]+@\p{{L}}[\p{{L}}\p{{N}}-]*(?:\.\p{{L}}[\p{{L}}\p{{N}}-]*)+  # e-mail
  | (?:\p{{L}}\.){{2,}}(?!{_W})                          # acronym: U.S. / e.g.
  | (?i:{_APOS}(?:s|re|ve|ll|d|m)|n{_APOS}t)(?!{_W})      # clitic standing alone: "Clinton 's"
  | (?<![\p{{L}}\p{{N}}.])[+.]\p{{N}}+(?:[.,:]\p{{N}}+)*(?!{_W})  # +44, .500
  | {_W}+(?:(?:{_HYPHEN}|[.&/:,]|{_APOS})(?={_W}){_W}+)*  # word, joined inside by - . & / : , '
  | \.{{2,}} | -{{2,}} | \u2026                         # ellipsis, dash runs
  | [^\s\p{{Cc}}\p{{Cs}}\u200b\u2060\ufeff]\p{{M}}*       # any other single character
    """,
    regex.VERBOSE,
)
_CLITIC = regex.compile(r"(?i)(?<=\p{L})(n['\u2019]t|['\u2019](?:s|re|ve|ll|d|m))$")
# Joiners that only bind digits ("1,000", "12:30", "1/2"), not words ("Paris,London").
_DIGIT_JOIN = regex.compile(r"(?<!\p{N})[/:,]|[/:,](?!\p{N})")

# Words that keep a following period (CoNLL writes "Mr.", "Corp.", "Jan."), so it does not end a sentence.
ABBREVIATIONS = frozenset(
    """mr mrs ms dr prof st mt ft jr sr sen rep gov gen col lt sgt capt cmdr adm rev hon pres
    inc corp co ltd plc llc bros dept univ assn no vs etc al approx est fig
    jan feb mar apr jun jul aug sep sept oct nov dec mon tue tues wed thu thur thurs fri sat sun""".split()
)
_ENDERS = frozenset(".!?\u3002\uff01\uff1f") | {"...", "\u2026"}
_CLOSERS = frozenset("\"')]}\u2019\u201d\u00bb")

_SIMPLE = regex.compile(r"[^/:,'\u2019]*")  # a word that _refine leaves alone (unless a period follows)

# For numpy, over the text's code points: white space (the pattern's \s, Unicode White_Space), which no
# word crosses (tests/test_lean.py checks the list), and the enders and closers above.
_WHITE = np.array([*range(0x9, 0xE), 0x20, 0x85, 0xA0, 0x1680, *range(0x2000, 0x200B), 0x2028, 0x2029, 0x202F,
                   0x205F, 0x3000], dtype=np.uint32)
_ENDER_CHARS = np.array([ord(c) for c in _ENDERS if len(c) == 1], dtype=np.uint32)
_CLOSER_CHARS = np.array([ord(c) for c in _CLOSERS], dtype=np.uint32)
_DOT, _LF, _CR = ord("."), ord("\n"), ord("\r")
# split_texts joins the texts with a blank line: no word crosses a newline, and every rule that looks past
# a word (a period at the end of a line, a rank at the start of one) reads a newline as it reads a text's
# edge. Sentences are cut at a text's edge.
_JOIN = "\n\n"


class Token(NamedTuple):
    """A word and its offsets (a tuple: a 5 MB text makes a million of them)."""

    text: str
    start: int
    end: int


@dataclass
class Split:
    """The words of many texts, flat: what the tagger works on. Offsets are into each word's own text."""

    words: list[str]  # every word of every text, in order
    starts: np.ndarray  # (words,) int64
    ends: np.ndarray
    sentence_lengths: np.ndarray  # words per sentence, all texts' sentences in order
    text_sentences: np.ndarray  # sentences per text

    def sentences(self, words: list[str] | None = None) -> list[list[list[str]]]:
        """texts -> sentences -> words (the documents a Predictor takes); `words` in place of self.words."""
        return _nest(self.words if words is None else words, self.sentence_lengths, self.text_sentences)

    def tokens(self) -> list[list[list[Token]]]:
        """texts -> sentences -> Tokens."""
        toks = list(map(Token, self.words, self.starts.tolist(), self.ends.tolist()))
        return _nest(toks, self.sentence_lengths, self.text_sentences)


def _nest(items: list, sentence_lengths: np.ndarray, text_sentences: np.ndarray) -> list:
    ends = np.cumsum(sentence_lengths).tolist()
    sents = [items[a:b] for a, b in zip([0, *ends[:-1]], ends)]
    cuts = np.cumsum(text_sentences).tolist()
    return [sents[a:b] for a, b in zip([0, *cuts[:-1]], cuts)]


def split_words(text: str) -> list[Token]:
    """All words of `text` with their offsets, in order."""
    s = split_texts([text])
    return list(map(Token, s.words, s.starts.tolist(), s.ends.tolist()))


def split_sentences(text: str) -> list[list[Token]]:
    """Words grouped into sentences: a break after . ! ? (and closing quotes) before a capital,
    digit or opening punctuation, and at every blank line."""
    return split_texts([text]).tokens()[0]


def split_texts(texts: Sequence[str]) -> Split:
    """split_sentences for many texts at once."""
    joined = _JOIN.join(texts)
    cps = np.frombuffer(joined.encode("utf-32-le", "surrogatepass"), dtype=np.uint32)  # code points
    words, s, e = _split_joined(joined, cps)
    bases = np.array([0, *itertools.accumulate(len(t) + len(_JOIN) for t in texts)][:-1], dtype=np.int64)
    text_of = np.searchsorted(bases, s, "right") - 1
    if words:
        first = np.flatnonzero(np.concatenate([[True], _breaks(cps, words, s, e, text_of)]))
    else:
        first = np.zeros(0, dtype=np.int64)
    lengths = np.diff(np.append(first, len(words)))
    counts = np.bincount(text_of[first], minlength=len(texts))
    return Split(words, s - bases[text_of], e - bases[text_of], lengths, counts)


def _split_joined(text: str, cps: np.ndarray) -> tuple[list[str], np.ndarray, np.ndarray]:
    """Words, starts, ends. No word crosses white space (even a URL stops there), so the text is cut at
    it first: a chunk of ASCII letters and digits, or a single printable ASCII character, is one word as
    it stands. Only the other chunks go through the big pattern, joined by spaces into one string."""
    white = np.isin(cps, _WHITE)
    edges = np.flatnonzero(np.diff(white, prepend=True, append=True))  # where chunks start and end
    starts, ends = edges[0::2], edges[1::2]
    if ((cps >= 0x1C) & (cps <= 0x1F)).any():  # str.split() would cut there too
        chunks = [text[a:b] for a, b in zip(starts.tolist(), ends.tolist())]
    else:
        chunks = text.split()
    alnum = ((cps >= 0x30) & (cps <= 0x39)) | ((cps >= 0x41) & (cps <= 0x5A)) | ((cps >= 0x61) & (cps <= 0x7A))
    chunk_of = np.searchsorted(starts, np.flatnonzero(~white & ~alnum), "right") - 1
    single = (ends - starts == 1) & (cps[starts] >= 0x21) & (cps[starts] <= 0x7E)  # printable ASCII
    odd = np.unique(chunk_of[~single[chunk_of]]).tolist()
    if not odd:
        return chunks, starts, ends
    found = _odd_words(text, [chunks[i] for i in odd], starts[odd].tolist())
    starts_l, ends_l = starts.tolist(), ends.tolist()
    words: list[str] = []
    w_starts: list[int] = []
    w_ends: list[int] = []
    done = 0  # chunks before this one are in the lists
    for i, toks in zip(odd, found):
        words += chunks[done:i]
        w_starts += starts_l[done:i]
        w_ends += ends_l[done:i]
        for w in toks:
            words.append(w.text)
            w_starts.append(w.start)
            w_ends.append(w.end)
        done = i + 1
    words += chunks[done:]
    w_starts += starts_l[done:]
    w_ends += ends_l[done:]
    return words, np.array(w_starts, dtype=np.int64), np.array(w_ends, dtype=np.int64)


def _odd_words(text: str, chunks: list[str], starts: list[int]) -> list[list[Token]]:
    """The words of each chunk (starts: where it sits in `text`), in one pass of the big pattern."""
    joined = " ".join(chunks)
    offsets = list(itertools.accumulate((len(c) + 1 for c in chunks), initial=0))  # of each chunk in joined
    out: list[list[Token]] = [[] for _ in chunks]
    k = 0
    skip = -1  # end of a period an abbreviation took
    n = len(text)
    for m in _TOKEN.finditer(joined):
        while m.start() >= offsets[k + 1]:
            k += 1
        shift = starts[k] - offsets[k]
        word, start, end = m.group(), m.start() + shift, m.end() + shift
        if start < skip:
            continue
        if _SIMPLE.fullmatch(word) and (end >= n or text[end] != "."):
            out[k].append(Token(word, start, end))  # the common case, kept fast
            continue
        out[k] += _refine(word, start, text)
        skip = out[k][-1].end
    return out


def _refine(word: str, start: int, text: str) -> list[Token]:
    """Split what the big pattern joined too eagerly; attach a period to an abbreviation."""
    parts = [(word, start)]
    if _DIGIT_JOIN.search(word) and not word.startswith(("http", "www.")) and "@" not in word:
        parts = _split_at(word, start, [m.start() for m in _DIGIT_JOIN.finditer(word)])
    out: list[Token] = []
    for w, s in parts:
        m = _CLITIC.search(w)
        if m and m.start() > 0:
            out += [Token(w[: m.start()], s, s + m.start()), Token(m.group(), s + m.start(), s + len(w))]
        else:
            out.append(Token(w, s, s + len(w)))
    last = out[-1]
    dot = last.end
    if dot < len(text) and text[dot] == "." and _keeps_period(last.text, text, start, dot):
        out[-1] = Token(last.text + ".", last.start, dot + 1)
    return out


def _split_at(word: str, start: int, cuts: list[int]) -> list[tuple[str, int]]:
    """Cut `word` around the single characters at `cuts`, which become tokens of their own."""
    parts, prev = [], 0
    for c in cuts:
        if c > prev:
            parts.append((word[prev:c], start + prev))
        parts.append((word[c], start + c))
        prev = c + 1
    if prev < len(word):
        parts.append((word[prev:], start + prev))
    return parts


def _keeps_period(word: str, text: str, start: int, dot: int) -> bool:
    """'Mr.', initials ('F.') and a rank opening a line ('1. Ivanisevic') keep their period, unless it
    ends the text or a line."""
    after = text[dot + 1 : dot + 2]
    if after == "." or not after or after in "\r\n":
        return False
    if word.lower() in ABBREVIATIONS:
        return True
    if word.isdigit() and len(word) <= 3:
        return not text[text.rfind("\n", 0, start) + 1 : start].strip()
    return len(word) == 1 and word.isalpha() and word.isupper()


def _breaks(cps: np.ndarray, words: list[str], s: np.ndarray, e: np.ndarray, text_of: np.ndarray) -> np.ndarray:
    """Per pair of neighbouring words, whether a sentence ends between them: a blank line, or . ! ?
    (and closing quotes) before a word that is not lower case; always at a text's edge."""
    same = text_of[1:] == text_of[:-1]
    a, b = e[:-1], s[1:]  # the gap between the two
    newlines = np.flatnonzero(cps == _LF)
    blank = np.searchsorted(newlines, b) - np.searchsorted(newlines, a) >= 2
    crlf = np.flatnonzero((cps[:-2] == _LF) & (cps[1:-1] == _CR) & (cps[2:] == _LF))
    blank |= np.searchsorted(crlf, b - 3, "right") > np.searchsorted(crlf, a)  # "\n\r\n" inside the gap

    length = e - s
    first = cps[s]
    ender = (length == 1) & np.isin(first, _ENDER_CHARS)
    three = np.flatnonzero((length == 3) & (first == _DOT))
    ender[three] = (cps[s[three] + 1] == _DOT) & (cps[s[three] + 2] == _DOT)  # "..."
    closer = (length == 1) & np.isin(first, _CLOSER_CHARS)
    # "?!" and a closing quote or bracket still belong to this sentence
    holds = ender[1:] | (closer[1:] & (b == a))
    after_ender = np.concatenate([[False], same[:-1] & ender[:-2]]) if len(same) else same
    ended = (ender[:-1] | (closer[:-1] & after_ender)) & ~holds & same
    k = np.flatnonzero(ended)
    ended[k[np.array([words[i + 1][0].islower() for i in k.tolist()], dtype=bool)]] = False
    return ~same | blank | ended
