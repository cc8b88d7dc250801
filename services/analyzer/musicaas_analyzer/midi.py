"""Standard MIDI Files: what the notes say, read without rendering.

:func:`read_midi` reads the fields that come from the events;
:func:`musicaas_analyzer.analysis.analyze_midi` adds those that come from a rendering and
returns the same :class:`~musicaas_analyzer.results.AudioAnalysis` as audio input, with
``midi`` set. Field by field:

**From the file's events** (symusic parses it; nothing is rendered for these):

* ``duration_s``: end of the last note, seconds (tempo map applied).
* ``key``, ``key_confidence``, ``mode_confidence``: the Albrecht & Shanahan profile
  correlation of :mod:`musicaas_analyzer.keyfinding`, applied to the pitch-class
  distribution of note durations in seconds (drum tracks left out) instead of an audio
  chroma, as in the symbolic Krumhansl-Schmuckler algorithm (Krumhansl 1990). The file's
  own key signature, when it has one, is reported separately in ``midi.key_signature``
  (key signatures do not tell relative major and minor apart reliably, and are often
  missing or left at C major).
* ``time_signature``: the numerator of the first time-signature event (4 when the file
  has none); ``time_signature_confidence`` 1.0 when the file states it, 0.0 otherwise.
* ``tempo_bpm``: beats per minute, the beat being the time signature's denominator note
  (quarter notes in 4/4 and 3/4, eighths in 6/8), of the tempo that is in effect for the
  longest time; ``tempo_confidence`` 1.0 when the file has a tempo event, 0.5 when it
  relies on the Standard MIDI File default of 120 quarter notes per minute;
  ``tempo_candidates`` the distinct tempi of the file weighted by how long each is in
  effect (at most three).
* ``beats_s``, ``beats``, ``bars``, ``tatums``: the metrical grid the file defines (beats
  of the denominator note, bars by the time signatures in effect, tatums halving the
  beat), confidence 1.0.
* ``midi``: note count and density (notes per second), pitch range of the non-drum notes,
  the first time signature, the number of tempo events, tracks with notes, drums, and the
  first key signature.

**From a rendering** (:func:`~musicaas_analyzer.analysis.analyze_midi` with
``render_audio=True``, the default): so that a MIDI upload can be
compared with audio tracks (similar-track search needs the embedding), the file is played
with the platform's General MIDI renderer (:func:`musicaas.render.render_midi`, in-tune
instruments, peak-normalised to 0.9), cut at ``duration_s``, and analysed as audio: the
embedding, ``loudness_lufs`` (of the rendering, not of any performance), the audio
features, descriptors, scores, segments and sections describe that rendering;
``sample_rate_hz`` is the rendering's 22050 Hz. With ``render_audio=False`` they are left
empty: the silence embedding, loudness -70 LUFS, zero features, no segments or sections,
``sample_rate_hz`` 0.

A file without notes is a valid, silent result (``is_silent=True``, no key, no tempo).

References: Krumhansl, C. L. (1990). *Cognitive Foundations of Musical Pitch*, Oxford UP;
Albrecht, J. & Shanahan, D. (2013), *Music Perception* 31(1), 59-67; Standard MIDI File
1.0 specification, MIDI Manufacturers Association (1996).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from musicaas import media
from musicaas.keys import Key
from musicaas.runtime.errors import InvalidArgument
from musicaas_analyzer import keyfinding
from musicaas_analyzer.decode import check_max_duration
from musicaas_analyzer.results import MidiFeatures, TempoCandidate, TimeInterval

#: Standard MIDI File default tempo, quarter notes per minute.
DEFAULT_QPM = 120.0


def _describe(name: str | None) -> str:
    return f" (named {name!r})" if name else ""


def _parse(data: bytes, filename: str | None):
    import symusic

    if not data:
        raise InvalidArgument(f"empty MIDI data (0 bytes){_describe(filename)}")
    if media.by_name("midi").match(data) is None:
        raise InvalidArgument(f"not a Standard MIDI File{_describe(filename)}: the data does not start with 'MThd'")
    if len(data) < 14:
        raise InvalidArgument(f"corrupt MIDI data{_describe(filename)}: the header chunk is truncated ({len(data)} bytes)")
    header_len = int.from_bytes(data[4:8], "big")
    n_tracks = int.from_bytes(data[10:12], "big")
    if header_len < 6:
        raise InvalidArgument(f"corrupt MIDI data{_describe(filename)}: header chunk length {header_len} < 6")
    # Walk the chunks: a truncated file declares more bytes than it holds.
    pos, found = 8 + header_len, 0
    while pos + 8 <= len(data) and found < n_tracks:
        size = int.from_bytes(data[pos + 4 : pos + 8], "big")
        if data[pos : pos + 4] == b"MTrk":
            found += 1
        if pos + 8 + size > len(data):
            raise InvalidArgument(
                f"truncated MIDI data{_describe(filename)}: chunk {data[pos:pos + 4]!r} at byte {pos} declares "
                f"{size} bytes but only {len(data) - pos - 8} are present"
            )
        pos += 8 + size
    if found < n_tracks:
        raise InvalidArgument(
            f"truncated MIDI data{_describe(filename)}: the header declares {n_tracks} tracks but "
            f"{found} are present"
        )
    try:
        return symusic.Score.from_midi(data)
    except Exception as exc:  # symusic raises RuntimeError/ValueError on corrupt data
        raise InvalidArgument(f"corrupt MIDI data{_describe(filename)}: {exc}") from exc


class _TempoMap:
    """Ticks to seconds through the tempo events (SMF default 120 qpm before the first)."""

    def __init__(self, score) -> None:
        tempos = score.tempos.numpy()
        tpq = float(score.ticks_per_quarter)
        times = np.asarray(tempos["time"], dtype=np.int64)
        mspq = np.asarray(tempos["mspq"], dtype=np.float64)
        if times.size == 0 or times[0] > 0:
            times = np.concatenate([[0], times])
            mspq = np.concatenate([[60e6 / DEFAULT_QPM], mspq])
        order = np.argsort(times, kind="stable")
        times, mspq = times[order], mspq[order]
        # keep the last event at each tick
        last = np.concatenate([times[1:] != times[:-1], [True]])
        self.ticks, self.sec_per_tick = times[last], mspq[last] / 1e6 / tpq
        self.start_s = np.concatenate([[0.0], np.cumsum(np.diff(self.ticks) * self.sec_per_tick[:-1])])

    def seconds(self, ticks: np.ndarray) -> np.ndarray:
        ticks = np.asarray(ticks, dtype=np.float64)
        i = np.clip(np.searchsorted(self.ticks, ticks, side="right") - 1, 0, self.ticks.size - 1)
        return self.start_s[i] + (ticks - self.ticks[i]) * self.sec_per_tick[i]


def _grid(score, end_tick: int) -> tuple[np.ndarray, np.ndarray, int, int, bool]:
    """Beat ticks (the denominator note), bar-start ticks, the first time signature's
    numerator and denominator (4/4 when the file states none), and whether it is stated."""
    tpq = int(score.ticks_per_quarter)
    ts = score.time_signatures.numpy()
    times = np.asarray(ts["time"], dtype=np.int64)
    nums = np.asarray(ts["numerator"], dtype=np.int64)
    dens = np.asarray(ts["denominator"], dtype=np.int64)
    valid = (nums > 0) & (dens > 0)
    times, nums, dens = times[valid], nums[valid], dens[valid]
    order = np.argsort(times, kind="stable")
    times, nums, dens = times[order], nums[order], dens[order]
    stated = times.size > 0
    first_num, first_den = (int(nums[0]), int(dens[0])) if stated else (4, 4)
    if not stated or times[0] > 0:  # 4/4 until the first event (SMF default)
        times = np.concatenate([[0], times])
        nums = np.concatenate([[4], nums])
        dens = np.concatenate([[4], dens])
    beats, bars = [], []
    for k in range(times.size):
        seg_end = times[k + 1] if k + 1 < times.size else end_tick
        beat = max(1, int(round(tpq * 4 / dens[k])))
        if seg_end > times[k]:
            beats.append(np.arange(times[k], seg_end, beat))
            bars.append(np.arange(times[k], seg_end, beat * int(nums[k])))
    beat_ticks = np.unique(np.concatenate(beats)) if beats else np.zeros(0, dtype=np.int64)
    bar_ticks = np.unique(np.concatenate(bars)) if bars else np.zeros(0, dtype=np.int64)
    return beat_ticks, bar_ticks, first_num, first_den, stated


def _intervals(starts_s: np.ndarray, end_s: float) -> tuple[TimeInterval, ...]:
    ends = np.concatenate([starts_s[1:], [end_s]])
    return tuple(TimeInterval(float(a), float(max(b - a, 0.0)), 1.0) for a, b in zip(starts_s, ends) if a < end_s)


@dataclass(frozen=True)
class MidiReading:
    """What a Standard MIDI File's events say, before any rendering.

    Attributes
    ----------
    duration_s : float, seconds
        End of the last note (tempo map applied).
    features : MidiFeatures
    fields : dict
        The :class:`~musicaas_analyzer.results.AudioAnalysis` fields that come from the
        events (module docstring), as keyword arguments; empty when the file has no notes.
    """

    duration_s: float
    features: MidiFeatures
    fields: dict[str, object]


def read_midi(data: bytes, *, filename: str | None = None, max_duration_s: float = 1800.0) -> MidiReading:
    """Read what a Standard MIDI File's events say (see the module docstring).

    Parameters
    ----------
    data : bytes
        The whole file, starting with ``MThd``.
    filename : str or None
        Used only in error messages.
    max_duration_s : float > 0, seconds
        Longer files are rejected.

    Returns
    -------
    MidiReading

    Raises
    ------
    InvalidArgument
        Empty, not a Standard MIDI File, truncated or corrupt data; longer than
        ``max_duration_s``.
    """
    check_max_duration(max_duration_s)
    score = _parse(bytes(data), filename)
    tempo_map = _TempoMap(score)

    pitched_pc = np.zeros(12)
    lowest, highest = 128, -1
    note_count = tracks_with_notes = 0
    has_drums = False
    end_tick = 0
    for track in score.tracks:
        notes = track.notes.numpy()
        n = int(notes["time"].size)
        if n == 0:
            continue
        tracks_with_notes += 1
        note_count += n
        start = notes["time"].astype(np.int64)
        stop = start + notes["duration"].astype(np.int64)
        end_tick = max(end_tick, int(stop.max()))
        if track.is_drum:
            has_drums = True
            continue
        pitch = notes["pitch"].astype(np.int64)
        lowest, highest = min(lowest, int(pitch.min())), max(highest, int(pitch.max()))
        seconds = tempo_map.seconds(stop) - tempo_map.seconds(start)
        np.add.at(pitched_pc, pitch % 12, np.maximum(seconds, 0.0))
    duration_s = float(tempo_map.seconds(np.array([end_tick]))[0])
    if duration_s > max_duration_s:
        raise InvalidArgument(
            f"MIDI file too long{_describe(filename)}: {duration_s:.1f} s exceeds the limit of {max_duration_s:g} s"
        )

    beat_ticks, bar_ticks, numerator, denominator, ts_stated = _grid(score, end_tick)
    ks = score.key_signatures.numpy()
    key_signature = None
    if ks["key"].size:
        sharps, minor = int(ks["key"][0]), int(ks["tonality"][0])
        major_pc = (sharps * 7) % 12
        key_signature = Key((major_pc + 9) % 12, "minor") if minor else Key(major_pc, "major")
    midi = MidiFeatures(
        note_count=note_count,
        note_density_per_s=note_count / duration_s if duration_s > 0 else 0.0,
        lowest_pitch_midi=lowest if highest >= 0 else -1,
        highest_pitch_midi=highest,
        time_signature_numerator=numerator,
        time_signature_denominator=denominator,
        tempo_changes=int(score.tempos.numpy()["time"].size),
        track_count=tracks_with_notes,
        has_drums=has_drums,
        key_signature=key_signature,
    )

    if note_count == 0 or duration_s <= 0:
        return MidiReading(duration_s, midi, {})

    # Tempo: the one in effect longest (in seconds), in beats of the denominator note.
    unit = denominator / 4.0
    ticks, spt = tempo_map.ticks, tempo_map.sec_per_tick
    seg_end = np.minimum(np.concatenate([ticks[1:], [max(end_tick, int(ticks[-1]))]]), max(end_tick, 1))
    seg_s = np.maximum(seg_end - np.minimum(ticks, seg_end), 0) * spt
    qpm = 60.0 / (spt * score.ticks_per_quarter)
    weights: dict[float, float] = {}
    for q, w in zip(np.round(qpm, 3), seg_s):
        weights[float(q)] = weights.get(float(q), 0.0) + float(w)
    ranked = sorted(weights.items(), key=lambda kv: kv[1], reverse=True)[:3]
    total = sum(w for _, w in ranked) or 1.0
    tempo_bpm = ranked[0][0] * unit
    candidates = tuple(TempoCandidate(q * unit, w / total) for q, w in ranked)
    tempo_stated = score.tempos.numpy()["time"].size > 0

    beats_s = tempo_map.seconds(beat_ticks)
    beats_s = beats_s[beats_s < duration_s]
    bars_s = tempo_map.seconds(bar_ticks)
    tatum_s = np.sort(np.concatenate([beats_s, 0.5 * (beats_s[:-1] + beats_s[1:])])) if beats_s.size > 1 else beats_s
    key_est = keyfinding.estimate_key(pitched_pc)

    symbolic = dict(
        duration_s=duration_s,
        tempo_bpm=float(tempo_bpm),
        beats_s=tuple(float(t) for t in beats_s),
        key=key_est.key,
        key_confidence=key_est.confidence if key_est.key is not None else 0.0,
        mode_confidence=key_est.mode_confidence,
        time_signature=numerator,
        time_signature_confidence=1.0 if ts_stated else 0.0,
        tempo_confidence=1.0 if tempo_stated else 0.5,
        tempo_candidates=candidates,
        beats=_intervals(beats_s, duration_s),
        bars=_intervals(bars_s, duration_s),
        tatums=_intervals(tatum_s, duration_s),
        is_silent=False,
        midi=midi,
    )
    return MidiReading(duration_s, midi, symbolic)
