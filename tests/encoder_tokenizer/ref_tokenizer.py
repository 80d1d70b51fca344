#!/usr/bin/env python3
"""Reference CLIP SimpleTokenizer (clean="lower") in the Python 3 standard
library only, for the differential test of encoder/pe_tokenizer.c.

It follows the official tokenizer step by step, except ftfy.fix_text, which
is not in the standard library (nor in Debian): it is left out, so the
comparison is made with our ftfy step switched off, and texts that ftfy
provably leaves alone (field "safe") are also compared through the full
pipeline. The regex module's \\p{L} / \\p{N} classes are emulated with
unicodedata categories; when the `regex` module happens to be importable,
`--self-check` compares the emulation with the real pattern.

    ref_tokenizer.py gen --vocab FILE [--n N] [--seed S]
        JSON lines {"text", "ids" (BPE ids), "safe"} for N generated texts
    ref_tokenizer.py ids --vocab FILE TEXT...
    ref_tokenizer.py self-check --vocab FILE [--n N]
"""
import argparse
import gzip
import html
import json
import random
import re
import sys
import unicodedata


# ---------------------------------------------------------------- tokenizer

def bytes_to_unicode():
    bs = (list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1))
          + list(range(ord("®"), ord("ÿ") + 1)))
    cs = bs[:]
    n = 0
    for b in range(256):
        if b not in bs:
            bs.append(b)
            cs.append(256 + n)
            n += 1
    return dict(zip(bs, [chr(c) for c in cs]))


SPECIALS = ("<start_of_text>", "<end_of_text>")
CONTRACTIONS = ("'s", "'t", "'re", "'ve", "'m", "'ll", "'d")


def _fold(ch):
    # simple case folding as the regex module's IGNORECASE applies it to the
    # literal parts of the pattern (the text is already lowercased)
    if ch == "\u017f":
        return "s"
    if ch == "\u212a":
        return "k"
    return ch.lower() if ch.isascii() else ch


def _cls(ch):
    # U+0345 COMBINING GREEK YPOGEGRAMMENI: not a letter, but under
    # IGNORECASE the regex module's negated class [^\s\p{L}\p{N}] rejects
    # it too (its case variants are letters), so no alternative matches it
    # and findall skips it like white space.
    if ch.isspace() or ch == "\u0345":
        return "s"
    cat = unicodedata.category(ch)
    if cat[0] == "L":
        return "L"
    if cat[0] == "N":
        return "N"
    return "o"


def pretokenize_emulated(text):
    """<start_of_text>|<end_of_text>|'s|'t|'re|'ve|'m|'ll|'d|[\\p{L}]+|[\\p{N}]|[^\\s\\p{L}\\p{N}]+"""
    out = []
    i, n = 0, len(text)
    while i < n:
        m = 0
        for lit in SPECIALS + CONTRACTIONS:
            seg = text[i:i + len(lit)]
            if len(seg) == len(lit) and all(_fold(a) == b for a, b in zip(seg, lit)):
                m = len(lit)
                break
        if not m:
            c = _cls(text[i])
            if c == "s":
                i += 1
                continue
            m = 1
            if c != "N":
                while i + m < n and _cls(text[i + m]) == c:
                    m += 1
        out.append(text[i:i + m])
        i += m
    return out


class Tokenizer:
    def __init__(self, vocab_path):
        merges = gzip.open(vocab_path).read().decode("utf-8").split("\n")
        merges = [tuple(m.split()) for m in merges[1:49152 - 256 - 2 + 1]]
        self.byte_encoder = bytes_to_unicode()
        vocab = list(self.byte_encoder.values())
        vocab = vocab + [v + "</w>" for v in vocab]
        for m in merges:
            vocab.append("".join(m))
        vocab.extend(SPECIALS)
        self.encoder = dict(zip(vocab, range(len(vocab))))
        self.bpe_ranks = dict(zip(merges, range(len(merges))))
        self.cache = {t: t for t in SPECIALS}

    def bpe(self, token):
        if token in self.cache:
            return self.cache[token]
        word = tuple(token[:-1]) + (token[-1] + "</w>",)
        pairs = set(zip(word, word[1:]))
        if not pairs:
            return token + "</w>"
        while True:
            bigram = min(pairs, key=lambda p: self.bpe_ranks.get(p, float("inf")))
            if bigram not in self.bpe_ranks:
                break
            first, second = bigram
            new_word = []
            i = 0
            while i < len(word):
                try:
                    j = word.index(first, i)
                except ValueError:
                    new_word.extend(word[i:])
                    break
                new_word.extend(word[i:j])
                i = j
                if word[i] == first and i < len(word) - 1 and word[i + 1] == second:
                    new_word.append(first + second)
                    i += 2
                else:
                    new_word.append(word[i])
                    i += 1
            word = tuple(new_word)
            if len(word) == 1:
                break
            pairs = set(zip(word, word[1:]))
        word = " ".join(word)
        if len(token) < 64:
            self.cache[token] = word
        return word

    @staticmethod
    def clean(text):
        # basic_clean without ftfy, whitespace_clean, lower
        text = html.unescape(html.unescape(text)).strip()
        text = re.sub(r"\s+", " ", text).strip()
        return text.lower()

    def encode(self, text, pretokenize=pretokenize_emulated):
        ids = []
        for token in pretokenize(self.clean(text)):
            token = "".join(self.byte_encoder[b] for b in token.encode("utf-8"))
            ids.extend(self.encoder[t] for t in self.bpe(token).split(" "))
        return ids


def regex_pretokenizer():
    import regex  # not in the standard library; only for --self-check
    pat = regex.compile(r"<start_of_text>|<end_of_text>|'s|'t|'re|'ve|'m|'ll|'d|[\p{L}]+|[\p{N}]|[^\s\p{L}\p{N}]+",
                        regex.IGNORECASE)
    return lambda text: pat.findall(text)


# ---------------------------------------------------------------- generator

def _stable(cp):
    """Assigned since Unicode 3.2 with the same category now: our utf8proc
    (Unicode 13) and any Python agree on it."""
    ch = chr(cp)
    try:
        old = unicodedata.ucd_3_2_0.category(ch)
    except ValueError:
        return False
    return old != "Cn" and old == unicodedata.category(ch) and old not in ("Cs", "Co")


def _pool(ranges):
    return [chr(c) for a, b in ranges for c in range(a, b + 1) if _stable(c)]


POOLS = {
    "latin": _pool([(0x41, 0x5A), (0x61, 0x7A), (0xC0, 0x24F)]),
    "greek": _pool([(0x370, 0x3FF), (0x1F00, 0x1FFF)]),
    "cyrillic": _pool([(0x400, 0x4FF)]),
    "cjk": _pool([(0x4E00, 0x4FFF), (0x3040, 0x30FF)]),
    "hangul": _pool([(0xAC00, 0xAD00), (0x1100, 0x1112)]),
    "arabic": _pool([(0x600, 0x6FF)]),
    "hebrew": _pool([(0x591, 0x5F4)]),
    "indic": _pool([(0x900, 0x97F), (0xE00, 0xE7F)]),
    "marks": _pool([(0x300, 0x36F), (0x483, 0x489), (0x20D0, 0x20EA)]),
    "digits": _pool([(0x30, 0x39), (0x660, 0x669), (0x966, 0x96F), (0xFF10, 0xFF19),
                     (0xB2, 0xB3), (0xB9, 0xB9), (0xBC, 0xBE), (0x2160, 0x2183), (0x2460, 0x249B)]),
    "punct": list("!\"#$%&'()*+,-./:;<=>?@[\\]^_`{|}~") + _pool([(0xA1, 0xBF), (0x2010, 0x2027),
                                                                  (0x2030, 0x205E), (0x3001, 0x3003)]),
    "symbols": _pool([(0x2190, 0x21FF), (0x2200, 0x22FF), (0x2500, 0x257F), (0x20A0, 0x20B1)]),
    "space": [" ", " ", " ", "  ", "\t", "\n", "\r\n", "\u00a0", "\u2003", "\u3000", "\x1c", "\u2028", "\x0b", "\x0c"],
    "emoji": ["\U0001F431", "\U0001F436", "\U0001F680", "\u2764", "\u2764\ufe0f", "\U0001F44D\U0001F3FD",
              "\U0001F468\u200d\U0001F469\u200d\U0001F467", "\U0001F1EB\U0001F1F7", "\U0001F600",
              "\u263A", "\U0001F4A9", "\u2B50", "\U0001F926\u200d\u2642\ufe0f"],
    "entity": ["&amp;", "&lt;", "&gt;", "&quot;", "&#39;", "&#x41;", "&#65;", "&amp;amp;", "&nbsp;",
               "&eacute;", "&EACUTE;", "&notit;", "&ampx", "&copy", "&AElig", "&#0;", "&#x80;", "&#150;",
               "&#x110000;", "&#55296;", "&#1;", "&#xFFFE;", "&#99999999999;", "&bogus;", "&", "&#",
               "&#x;", "&lt", "&LT;", "&ntilde;", "&NTILDE;", "&hellip;", "&rsquo;", "&#x1F600;"],
    "special": ["<start_of_text>", "<end_of_text>", "<START_OF_TEXT>", "<End_Of_Text>",
                "<\u017ftart_of_text>", "<end_of_text", "start_of_text>"],
    "contraction": ["'s", "'t", "'re", "'ve", "'m", "'ll", "'d", "'S", "'LL", "'\u017f", "''s", "'x",
                    "it's", "DON'T", "we'RE"],
    "casing": ["\u0130", "\u0130stanbul", "\u03a3", "\u039f\u0394\u039f\u03a3", "\u0391\u03a3'",
               "\u0391\u03a3\u0301", "\u0391\u03a3\u0391", "\u1E9E", "\u212A", "\u00DF", "\u0149",
               "\u01C5", "\u1F88", "\u2126"],
}

WORDS = ("a photo of the cat dog running jumping photograph beautiful sunset over mountains "
         "city night lights street market people children playing football water tree").split()


def gen_text(rng):
    kind = rng.random()
    parts = []
    n = rng.randint(1, 12)
    for _ in range(n):
        r = rng.random()
        if r < 0.3:
            w = rng.choice(WORDS)
            if rng.random() < 0.2:
                w = w.upper()
            elif rng.random() < 0.2:
                w = w.capitalize()
            parts.append(w)
        elif r < 0.75:
            pool = POOLS[rng.choice(list(POOLS))]
            parts.append("".join(rng.choice(pool) for _ in range(rng.randint(1, 6))))
        else:
            parts.append(rng.choice(POOLS[rng.choice(["space", "entity", "special", "contraction",
                                                       "casing", "emoji", "punct"])]))
        parts.append(rng.choice(["", " ", " ", " ", "  "]))
    text = "".join(parts)
    if kind < 0.03:   # long texts and long words
        text = " ".join(rng.choice(WORDS) for _ in range(rng.randint(50, 400)))
    elif kind < 0.05:
        text = "".join(rng.choice(POOLS["latin"] + POOLS["cjk"]) for _ in range(rng.randint(100, 2000)))
    elif kind < 0.06:
        text = rng.choice(["a", "ab", "\u00e9"]) * rng.randint(100, 3000)
    return text


# Characters ftfy.fix_text may change, or that feed its mojibake heuristic;
# a text avoiding all of them, with no '&' and already NFC, is left alone.
def ftfy_safe(text):
    if "&" in text or "\x1b" in text or not unicodedata.is_normalized("NFC", text):
        return False
    for ch in text:
        c = ord(ch)
        if c < 0x20 and ch not in "\t\n":
            return False
        if (0x7F <= c <= 0x36F or 0x2000 <= c <= 0x22FF or 0x2500 <= c <= 0x25FF or c == 0x3000
                or 0xE000 <= c <= 0xF8FF or 0xFB00 <= c <= 0xFB06 or 0xFE00 <= c <= 0xFFFF
                or 0x370 <= c <= 0x3FF or 0x400 <= c <= 0x45F or c in (0x2BC, 0x490, 0x491)):
            return False
    return True


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("mode", choices=["gen", "ids", "self-check"])
    ap.add_argument("--vocab", required=True)
    ap.add_argument("--n", type=int, default=3000)
    ap.add_argument("--seed", type=int, default=1234)
    ap.add_argument("texts", nargs="*")
    a = ap.parse_args()
    tok = Tokenizer(a.vocab)
    if a.mode == "ids":
        for t in a.texts:
            print(json.dumps(tok.encode(t)))
        return 0
    rng = random.Random(a.seed)
    if a.mode == "self-check":
        pre = regex_pretokenizer()
        bad = 0
        for _ in range(a.n):
            t = tok.clean(gen_text(rng))
            if pre(t) != pretokenize_emulated(t):
                bad += 1
                print("DIFF", repr(t), pre(t), pretokenize_emulated(t), file=sys.stderr)
        print("%d texts, %d differ" % (a.n, bad))
        return 1 if bad else 0
    out = sys.stdout
    for _ in range(a.n):
        t = gen_text(rng)
        out.write(json.dumps({"text": t, "ids": tok.encode(t), "safe": ftfy_safe(t)}) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
