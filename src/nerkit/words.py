"""Raw text -> sentences of words with character offsets, split the way CoNLL-2003 was.

The model was trained on CoNLL-style tokens, so raw text is cut the same way: punctuation split off,
hyphenated names ("Hewlett-Packard", "2-1") and dotted acronyms ("U.S.") kept whole, clitics ("'s",
"n't") split off as in the Penn Treebank. Every word keeps its offsets, so text[start:end] is the word.

Separators are skipped, never rewritten: whitespace, control characters, zero-width spaces and lone
surrogates (which a Rust tokenizer cannot take) fall between words, so offsets stay valid on any input.
"""

from __future__ import annotations

from typing import NamedTuple

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
_SIMPLE = regex.compile(r"[^/:,'\u2019]*")
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


class Token(NamedTuple):
    """A word and its offsets (a tuple: a 5 MB text makes a million of them)."""

    text: str
    start: int
    end: int


def split_words(text: str) -> list[Token]:
    """All words of `text` with their offsets, in order."""
    out: list[Token] = []
    skip = -1  # end of a period an abbreviation took
    n = len(text)
    for m in _TOKEN.finditer(text):
        word, start, end = m.group(), m.start(), m.end()
        if start < skip:
            continue
        if _SIMPLE.fullmatch(word) and (end >= n or text[end] != "."):
            out.append(Token(word, start, end))  # the common case, kept fast
            continue
        out += _refine(word, start, text)
        skip = out[-1].end
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


def split_sentences(text: str) -> list[list[Token]]:
    """Words grouped into sentences: a break after . ! ? (and closing quotes) before a capital,
    digit or opening punctuation, and at every blank line."""
    words = split_words(text)
    sents: list[list[Token]] = []
    cur: list[Token] = []
    for i, tok in enumerate(words):
        cur.append(tok)
        nxt = words[i + 1] if i + 1 < len(words) else None
        if nxt is None:
            break
        if _blank_line_between(text, tok.end, nxt.start) or _ends_sentence(words, i):
            sents.append(cur)
            cur = []
    if cur:
        sents.append(cur)
    return sents


def _blank_line_between(text: str, a: int, b: int) -> bool:
    gap = text[a:b]
    return gap.count("\n") >= 2 or "\n\r\n" in gap


def _ends_sentence(words: list[Token], i: int) -> bool:
    tok, nxt = words[i], words[i + 1]
    if nxt.text in _ENDERS or (nxt.text in _CLOSERS and nxt.start == tok.end):
        return False  # "?!" and a closing quote or bracket still belong to this sentence
    ended = tok.text in _ENDERS or (tok.text in _CLOSERS and i > 0 and words[i - 1].text in _ENDERS)
    return ended and not nxt.text[0].islower()
