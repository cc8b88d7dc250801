"""The musicaas symbolic music model: data, Transformer, training, Triton serving.

Modules (torch is imported by ``model``, ``train``, ``serve`` and ``evaluate`` only, never
by this package's ``__init__``, so locating the package stays cheap):

``data``      Bach chorales and Essen folk tunes from music21 -> REMI token sequences with
              control prefixes (style, key, metre, tempo bin, instrument family, bars)
``model``     small decoder-only Transformer and its batched, KV-cached sampler
              (temperature, top-k, top-p, per-row seeds)
``constraints`` constrained decoding: REMI grammar + metre, key guidance, melody harmonisation
``train``     ``python -m musicaas_model.train --out <dir>``
``card``      the model card and training figure that ``train`` writes (no torch)
``serve``     ``python -m musicaas_model.serve`` and :func:`musicaas_model.serve.start_triton`
``evaluate``  ``python -m musicaas_model.evaluate``: key adherence of a checkpoint

The shipped checkpoint lives in ``checkpoint/`` (``model.pt``, ``tokenizer.json``,
``MODEL_CARD.md``, ``train_log.json``, ``loss.png``, evaluation figures). Benchmarks:
``bench/generator_quality.py`` and ``bench/generator_speed.py``.
"""
