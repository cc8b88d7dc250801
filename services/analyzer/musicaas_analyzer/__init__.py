"""musicaas analyzer: the numeric core behind the ``analyzer`` gRPC service.

Pure Python, no gRPC. The modules, in the order a request flows through them:

:mod:`musicaas_analyzer.decode`
    Uploaded bytes (WAV, FLAC, Ogg, MP3) to validated mono float32 audio; the container
    is sniffed from the bytes, not taken from the file name.
:mod:`musicaas_analyzer.midi`
    Standard MIDI Files: key, metre, tempo, note density, pitch range and duration read
    from the events (and a General MIDI rendering for the audio-derived fields).
:mod:`musicaas_analyzer.loudness`
    Integrated loudness, ITU-R BS.1770-4 / EBU R 128, with pyloudnorm's K-weighting; the
    EBU Tech 3342 loudness range; the loudness of any part of a track.
:mod:`musicaas_analyzer.rhythm`
    Tempo and its candidates, beats, metre, bars, tatums, with confidences.
:mod:`musicaas_analyzer.keyfinding`
    A cheap semitone chroma and profile-correlation key estimation with key and mode
    confidences.
:mod:`musicaas_analyzer.structure`
    Onset-based segments and novelty-based sections (the audio-analysis tree).
:mod:`musicaas_analyzer.descriptors`
    Perceptual audio features (danceability, energy, ...) and music evaluation scores:
    documented heuristics in [0, 1], not trained models.
:mod:`musicaas_analyzer.embedding`
    The fixed-length, L2-normalised similarity embedding.
:mod:`musicaas_analyzer.analysis`
    :func:`~musicaas_analyzer.analysis.analyze_signal` and
    :func:`~musicaas_analyzer.analysis.analyze_bytes`, which tie the above together.
:mod:`musicaas_analyzer.results`
    The result types; :mod:`musicaas_analyzer.convert` turns them into
    ``musicaas.common.v1.TrackAnalysis``.

Every bad input raises :class:`musicaas.runtime.errors.InvalidArgument` with a message
that names the offending value and its unit.
"""
