"""musicaas analyzer: the ``analyzer`` service and the numeric analysis behind it.

The numeric modules are plain Python and numpy (no gRPC, no NATS) and can be used on their
own; :mod:`musicaas_analyzer.service` and :mod:`musicaas_analyzer.__main__` put them behind
the gRPC service and the ``tracks.uploaded`` consumer. In the order a request flows through
them:

:mod:`musicaas_analyzer.decode`
    Uploaded bytes or files (WAV, FLAC, Ogg, MP3, AIFF) to validated mono float32 audio,
    block by block (a file is decoded in place, never read whole); the container is sniffed
    from the bytes with :mod:`musicaas.media` (as the gateway does), not taken from the file
    name.
:mod:`musicaas_analyzer.midi`
    Standard MIDI Files: key, metre, tempo, note density, pitch range and duration read
    from the events.
:mod:`musicaas_analyzer.loudness`
    Integrated loudness, ITU-R BS.1770-4 / EBU R 128, with pyloudnorm's K-weighting; the
    EBU Tech 3342 loudness range; momentary and short-term loudness; the loudness of any
    part of a track.
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
    The hand-built, L2-normalised descriptor embedding (its length is
    :data:`musicaas.embedding.DESCRIPTOR_EMBEDDING_DIM`; ``descriptor_embedding`` on the wire).
:mod:`musicaas_analyzer.tagger`
    The client of the musicnn tagger on Triton: the learned embedding that the recommender
    indexes (:data:`musicaas.embedding.EMBEDDING_DIM`) and the tags;
    :mod:`musicaas_analyzer.sectiontags` averages its per-patch tags over each section.
:mod:`musicaas_analyzer.filetags`
    A file's own tags (ID3, Vorbis comments, MP4 atoms, a MIDI file's track name) read with
    mutagen, bounded and cleaned by :mod:`musicaas.metadata`; they complete the upload's
    metadata.
:mod:`musicaas_analyzer.analysis`
    :func:`~musicaas_analyzer.analysis.analyze_signal`,
    :func:`~musicaas_analyzer.analysis.analyze_bytes`,
    :func:`~musicaas_analyzer.analysis.analyze_file` (the same, from a file) and
    :func:`~musicaas_analyzer.analysis.analyze_midi` (a MIDI file's notes plus the analysis
    of its General MIDI rendering), which tie the above together.
:mod:`musicaas_analyzer.results`
    The result types; :mod:`musicaas_analyzer.convert` turns them into
    ``musicaas.common.v1.TrackAnalysis``.
:mod:`musicaas_analyzer.service`
    The gRPC servicer and the event consumer (which streams each upload into a spool file
    and hands the worker its path), running analyses on a pool of worker processes.
:mod:`musicaas_analyzer.plots`
    One picture per analysed track (``musicaas analyze --plot``).

Every bad input raises :class:`musicaas.runtime.errors.InvalidArgument` with a message
that names the offending value and its unit.
"""
