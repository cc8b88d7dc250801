"""musicaas analyzer: the numeric core behind the ``analyzer`` gRPC service.

Pure Python, no gRPC. The modules, in the order a request flows through them:

:mod:`musicaas_analyzer.decode`
    Uploaded bytes (WAV, FLAC, Ogg, MP3) to validated mono float32 audio; the container
    is sniffed from the bytes, not taken from the file name.
:mod:`musicaas_analyzer.loudness`
    Integrated loudness, ITU-R BS.1770-4 / EBU R 128, with pyloudnorm's K-weighting.
:mod:`musicaas_analyzer.keyfinding`
    A cheap semitone chroma and profile-correlation key estimation with a confidence.
:mod:`musicaas_analyzer.embedding`
    The fixed-length, L2-normalised similarity embedding.
:mod:`musicaas_analyzer.analysis`
    :func:`~musicaas_analyzer.analysis.analyze_signal` and
    :func:`~musicaas_analyzer.analysis.analyze_bytes`, which tie the above together,
    plus tempo and beat tracking.

Every bad input raises :class:`musicaas.runtime.errors.InvalidArgument` with a message
that names the offending value and its unit.
"""
