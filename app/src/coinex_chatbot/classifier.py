"""A second opinion next to BM25: a linear classifier over the help centre's articles.

One per language: multinomial logistic regression on a question's tokens (``language.tokenize``:
English stemmed words, word pairs and intent markers; Chinese lexicon words and character
n-grams), each token weighted by its smoothed IDF over the training texts, the vector
L2-normalised. Trained on every article's title, keywords and customer phrasings (one sample
each, labelled with the article), with ``ITERATIONS`` full-batch Adam steps on the L2-penalised
cross-entropy; deterministic, numpy only.

Where BM25 asks "which article shares the question's rare words?", the classifier asks "which
article's phrasings does the question resemble, word weights learnt?": the confidence uses how
sure it is of BM25's best article and whether the two agree (``knowledge``). The weights are
fitted with the calibration (``python -m coinex_chatbot.knowledge``) and shipped as
``classifier.npz`` (float16, stored uncompressed): loaded from a file, the weights are mapped
read-only from it, so the pages are the page cache's and every task process of a host shares one
copy; the vocabulary's words are interned, shared with the index's tokens.
"""

from __future__ import annotations

import io
import math
import struct
import sys
import zipfile
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import IO

import numpy as np

ITERATIONS = 80
LEARNING_RATE = 0.2
L2 = 1e-5
_ADAM = (0.9, 0.999, 1e-8)

Sample = tuple[Sequence[str], int]  # (tokens, article index)


@dataclass(frozen=True)
class Classifier:
    """Article probabilities for a question's tokens; ``ids[i]`` is the article of class i."""

    ids: tuple[str, ...]
    vocab: dict[str, int]
    idf: np.ndarray  # per vocabulary token
    weights: np.ndarray  # vocabulary x articles (float16 when loaded from a file)
    bias: np.ndarray  # per article

    def probabilities(self, tokens: Iterable[str]) -> np.ndarray:
        """Softmax over the articles; uniform-ish (the bias alone) without a known token."""
        cols = sorted({self.vocab[t] for t in tokens if t in self.vocab})
        z = self.bias.astype(np.float64)
        if cols:
            v = self.idf[cols]
            z = z + (v / np.linalg.norm(v)) @ self.weights[cols].astype(np.float32)
        z = np.exp(z - z.max())
        return z / z.sum()


def train(samples: list[Sample], ids: Sequence[str]) -> Classifier:
    """The classifier fitted on ``samples`` (tokens, index into ``ids``)."""
    if not samples:
        raise ValueError("no training samples")
    df: dict[str, int] = {}
    for tokens, _ in samples:
        for token in set(tokens):
            df[token] = df.get(token, 0) + 1
    vocab = {token: i for i, token in enumerate(sorted(df))}
    n = len(samples)
    idf = np.array([math.log((1 + n) / (1 + df[t])) + 1 for t in sorted(df)], dtype=np.float32)
    # The samples as a sparse matrix: row-major (rows, cols, vals) and a column-major order.
    rows: list[int] = []
    cols: list[int] = []
    vals: list[np.ndarray] = []
    for r, (tokens, _) in enumerate(samples):
        cs = sorted({vocab[t] for t in tokens})
        v = idf[cs]
        rows += [r] * len(cs)
        cols += cs
        vals.append(v / (np.linalg.norm(v) or 1.0))
    row_arr, col_arr = np.array(rows), np.array(cols)
    val_arr = np.concatenate(vals).astype(np.float32)[:, None]
    row_start = np.searchsorted(row_arr, np.arange(n))
    by_col = np.argsort(col_arr, kind="stable")
    used_cols, col_start = np.unique(col_arr[by_col], return_index=True)
    n_classes = len(ids)
    target = np.zeros((n, n_classes), dtype=np.float32)
    target[np.arange(n), [c for _, c in samples]] = 1.0
    weights = np.zeros((len(vocab), n_classes), dtype=np.float32)
    bias = np.zeros(n_classes, dtype=np.float32)
    moments = [np.zeros_like(weights), np.zeros_like(weights), np.zeros_like(bias)]
    moments.append(np.zeros_like(bias))
    b1, b2, eps = _ADAM
    for step in range(1, ITERATIONS + 1):
        z = np.add.reduceat(weights[col_arr] * val_arr, row_start) + bias
        z -= z.max(axis=1, keepdims=True)
        p = np.exp(z)
        p /= p.sum(axis=1, keepdims=True)
        g = (p - target) / n
        grad_w = L2 * weights
        grad_w[used_cols] += np.add.reduceat((g[row_arr] * val_arr)[by_col], col_start)
        grad_b = g.sum(axis=0)
        for k, (param, grad) in enumerate(((weights, grad_w), (bias, grad_b))):
            m, v = moments[2 * k], moments[2 * k + 1]
            m *= b1
            m += (1 - b1) * grad
            v *= b2
            v += (1 - b2) * grad * grad
            param -= LEARNING_RATE * (m / (1 - b1**step)) / (np.sqrt(v / (1 - b2**step)) + eps)
    return Classifier(tuple(ids), vocab, idf, weights, bias)


def save(classifiers: dict[str, Classifier], path: Path) -> None:
    """Write the per-language classifiers (weights as float16) to ``path`` (.npz)."""
    arrays: dict[str, np.ndarray] = {}
    for lang, c in classifiers.items():
        arrays[f"{lang}_ids"] = np.array(c.ids)
        arrays[f"{lang}_vocab"] = np.array(sorted(c.vocab, key=c.vocab.__getitem__))
        arrays[f"{lang}_idf"] = c.idf.astype(np.float32)
        arrays[f"{lang}_weights"] = c.weights.astype(np.float16)
        arrays[f"{lang}_bias"] = c.bias.astype(np.float32)
    # an .npz as np.savez writes it, the weights stored (``load`` maps them from the file), the
    # rest deflated (the vocabulary's fixed-width strings are mostly padding)
    with zipfile.ZipFile(path, "w") as zf:
        for name, array in arrays.items():
            buffer = io.BytesIO()
            np.lib.format.write_array(buffer, array, allow_pickle=False)
            stored = name.endswith("_weights")
            method = zipfile.ZIP_STORED if stored else zipfile.ZIP_DEFLATED
            zf.writestr(f"{name}.npy", buffer.getvalue(), compress_type=method)


def mapped(path: Path, name: str) -> np.ndarray | None:
    """Array ``name`` of the .npz at ``path`` mapped read-only from the file (np.memmap), or None
    when the member is compressed. An .npz is a zip of .npy files: a stored member's bytes are
    its .npy file, at the offset its local header gives."""
    with zipfile.ZipFile(path) as zf:
        info = zf.getinfo(f"{name}.npy")
    if info.compress_type != zipfile.ZIP_STORED:
        return None
    with path.open("rb") as f:
        f.seek(info.header_offset)
        header = f.read(30)  # the zip local file header: its name and extra field follow
        if header[:4] != b"PK\x03\x04":
            return None
        name_len, extra_len = struct.unpack("<HH", header[26:30])
        f.seek(info.header_offset + 30 + name_len + extra_len)
        version = np.lib.format.read_magic(f)
        read_header = {
            (1, 0): np.lib.format.read_array_header_1_0,
            (2, 0): np.lib.format.read_array_header_2_0,
        }[version]
        shape, fortran, dtype = read_header(f)
        offset = f.tell()
    if dtype.hasobject:
        return None
    order = "F" if fortran else "C"
    mapping = np.memmap(path, dtype=dtype, mode="r", offset=offset, shape=shape, order=order)
    return mapping.view(np.ndarray)  # indexed as a plain array (np.memmap's own is slower)


def load(source: Path | IO[bytes], languages: Iterable[str]) -> dict[str, Classifier]:
    """The classifiers ``save`` wrote (``source``: a path or a binary file object). From a path,
    the weights are mapped from the file (``mapped``) where it stores them uncompressed."""
    with np.load(source, allow_pickle=False) as data:
        out = {}
        for lang in languages:
            vocab = [sys.intern(str(t)) for t in data[f"{lang}_vocab"]]
            weights = mapped(source, f"{lang}_weights") if isinstance(source, Path) else None
            out[lang] = Classifier(
                tuple(str(i) for i in data[f"{lang}_ids"]),
                {t: i for i, t in enumerate(vocab)},
                data[f"{lang}_idf"].astype(np.float32),
                # float16: half the memory; rows widened when used
                data[f"{lang}_weights"] if weights is None else weights,
                data[f"{lang}_bias"].astype(np.float32),
            )
    return out
