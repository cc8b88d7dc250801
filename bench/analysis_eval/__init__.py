"""An honest evaluation of the analyzer's key, tempo, beats, downbeats and metre (issue 12 item 1).

Run (one command; the figures of the analyzer, Essentia and librosa side by side)::

    python bench/analysis_eval.py            # 72 chorales + 72 folk songs x 2 renders + 10 recordings
    python bench/analysis_eval.py --quick    # 16 chorales + 12 folk songs x 1 render + 4 recordings
    python bench/analysis_eval.py --verbose  # also one line per development item
    python bench/analysis_eval.py --json dev.json   # the development part's rows, for diagnosis

Everything downloaded or cached lives under ``~/.cache/musicaas-bench`` (``MUSICAAS_BENCH_CACHE``):
Debian packages in ``debs/`` and ``x/``, parsed pieces and the seen list in ``analysis_eval/``,
the Essentia venv in ``peer-venv/``. Nothing is written into the repository.

The split
---------
By **piece**, never by render: a piece is in the **held-out** part when the first 32 bits of
SHA-256(``"musicaas-analysis-eval-v1:" + piece_id``) are odd, else in the **development**
part (:func:`protocol.split_of`); every render of a piece is in its piece's part. Piece ids
are ``chorale:<bwv group>`` (alternative versions such as ``bwv248.23-2`` count as
``bwv248.23``), ``folk:essen-<file>-<nnn>`` and ``real:planetblupi/<track>``. Chorales the
analyzer has already been tuned or checked on are always **development**
(:func:`sources.seen_chorales`: the calibration chorales and the sets of
``bench/analyzer_accuracy.py`` with offsets 0 and 2, the files ``bench/key_accuracy.py
--n 60`` visits, the first files of ``musicaas.chorales.iter_chorales``; 132 pieces).
Pieces are taken in a second fixed hash order (:func:`protocol.hash_order`), half from each
part. **Develop on the development part only**: ``--verbose`` and ``--json`` list
development items only, and the held-out part is only ever scored in aggregate.

Pieces and renders
------------------
Pieces come only from music21's Bach chorales (``musicaas_model.data``'s parsing: 4/4 or
3/4 throughout, written major/minor key, pickups padded so that onset 0 is a bar line;
only those whose lowest final note is the written tonic, :func:`sources.ends_on_tonic`) and
the Essen folk songs the generator uses (``musicaas_model.data.load_folk``: the files of
``FOLK_FILES``, key from the signature and the final note, the first 240 tunes in 4/4 or
3/4; and, from the same files with the same key rule, the first 240 tunes in 2/4 or 6/8:
:func:`sources.load_folk_metre_pieces`, 24 of them by default). A 6/8 tune's beat is the
dotted quarter (two per bar; the reference metre is 6), played at a beat tempo folded into
50-140 BPM (:func:`protocol.beat_tempo`). The files hold one 5/4 tune, so 5/4 is only
checked by the analyzer's unit tests on synthesised audio. The rest
of music21's corpus is reserved and not used. A piece is played for at most
:data:`protocol.CAP_S` (40 s). Each render (:func:`protocol.plan_renders`) draws

* a **sound source** (rotating): ``timgm6mb/symusic`` (the project's own
  :func:`musicaas.render.render_midi`: pretty_midi's TimGM6mb through symusic 0.5.9,
  limited to the programs it plays in tune), ``fluidr3/fluidsynth`` (Debian's
  ``fluid-soundfont-gm`` FluidR3_GM.sf2) and ``musescore-lite/fluidsynth`` (Debian's
  ``musescore-general-soundfont-small`` MuseScore_General_Lite.sf3), both through
  libfluidsynth 2.3 (Debian's ``libfluidsynth3``, driven through ctypes; fetched with its
  libraries by ``apt-get download`` + ``dpkg-deb -x`` when the system lacks it);
* an **ensemble family** (cycling; :data:`sources.FAMILIES`): piano, chromatic percussion,
  organ, guitar, strings, choir, brass, reeds, pipes (flutes), synth pad; an ensemble is one
  General MIDI program for the voices at or above middle C and one below (TimGM6mb: only
  its in-tune programs, so no organ, guitar, choir or pad there);
* a **tempo** (cycling over :data:`protocol.TEMPI_BPM`, 46 to 192 quarter notes per minute),
  a **transposition** (-5..+6 semitones), **dynamics** (p / mf / f: mean velocity 48 / 76 /
  104 with +-8 jitter and accented downbeats, output peak 0.3 / 0.6 / 0.9), a **room** (dry,
  RT60 0.5 s at 20 % wet, RT60 1.8 s at 35 % wet: a synthetic exponentially decaying noise
  response, the same for every source; the synthesisers' own reverb and chorus are off) and
  a **detuning** (uniform in +-20 cents, by resampling, which scales the reference tempo
  and times by the same factor).

Truth: the key (transposed), the tempo, beats on the score's quarter-note grid from the
first onset to the last note's end, downbeats on its bar lines, beats per bar from the
time signature.

Real recordings
---------------
Debian's ``planetblupi-music-ogg`` with ``planetblupi-music-midi`` (Planet Blupi, GPL-3+):
each ``musicNNN.ogg`` is the game authors' own rendering of ``musicNNN.mid`` (same length
within 4 s, one tempo event, 4/4, General MIDI with drums), so the MIDI tempo is the truth
(96 to 140 BPM). A 60 s excerpt from 30 s is scored for tempo only (the excerpt's beat
phase and key are not annotated). Ten tracks, split by the same hash. None of the
reserved packages (``wesnoth-1.16-music``, ``warzone2100-music``,
``fretsonfire-songs-muldjord``, ``fretsonfire-songs-sectoid``) is used; Debian has no
other song pack with charts (StepMania is not packaged; ``performous`` ships no songs).

Systems and scores
------------------
* **ours**: :func:`musicaas_analyzer.analysis.analyze_signal` (``detail=True``: the
  downbeats are the starts of ``bars``), in-process;
* **Essentia** (AGPL; a peer only, in its own venv, in a subprocess: :mod:`peers`):
  ``RhythmExtractor2013(method="multifeature")`` and ``KeyExtractor()``;
* **librosa**: ``beat.beat_track`` and Krumhansl-Kessler on the mean ``chroma_stft``.

Tuning
------
Constants of the analyzer are tuned on :mod:`devcache` only: the development part's renders
(400 chorale and 376 folk renders of development pieces, planned like the evaluation's but
from more pieces), rendered once into ``CACHE/analysis_eval/dev-audio-v3/``
(``python bench/analysis_eval/devcache.py build``), plus a development check of drummed
music: the 27 one-tempo MIDI songs of OpenTTD's OpenMSX soundtrack (Debian's
``openttd-openmsx``, GPL-2.0; :func:`sources.game_midi_songs`), each rendered with two
SoundFonts, 60 s from 10 s in, tempo truth from the file. They are scored in the tuning
reports and never fitted, and never in the evaluation itself. ``bench/tune_key.py`` and
``bench/tune_rhythm.py`` read the cache, with cross-validation by piece inside it.

Scores (mir_eval 0.8.2, :mod:`protocol`): key MIREX weighted score (1 exact, 0.5 estimate a
fifth above, 0.3 relative, 0.2 parallel) and the same with the symmetric fifth rule (a fifth
below also 0.5), exact share; tempo Acc1 (within 4 %) and Acc2 (also x2, x3, 1/2, 1/3); beat
and downbeat F-measure at 70 ms after the first 5 s (``mir_eval.beat.trim_beats``); metre;
the calibration of the analyzer's key confidence (against an exact key) and of its tempo
candidates' weights (against being within 4 %) as expected calibration error in 10 bins
(:func:`protocol.expected_calibration_error`);
throughput as audio seconds per wall second of analysis on one core (each worker is one
process with one thread; Essentia's time excludes its resampling to 44.1 kHz). Tables have
one row per family, per source, per kind of piece, all renders and the real recordings,
and the columns ours / Essentia / librosa x development / held-out; ``!`` marks an
analyzer cell below the issue's targets (:data:`protocol.TARGETS`). The slowest-attack
family is measured, not assumed: the median 10-90 % rise time of one C4 over the sources.
"""
