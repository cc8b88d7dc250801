"""Pieces, sound sources and real recordings of the evaluation (see the package docstring).

Pieces come from music21's Bach chorales and the Essen folk songs the generator uses
(parsed by :mod:`musicaas_model.data`, cached as JSON); sound sources are the project's
renderer (:func:`musicaas.render.render_midi`, TimGM6mb through symusic) and libfluidsynth
(Debian's ``libfluidsynth3``) with Debian's FluidR3_GM and MuseScore General Lite
SoundFonts; the real recordings are Planet Blupi's Ogg soundtrack, whose MIDI sources
give the tempo. Drummed game music for the development part only: OpenTTD's OpenMSX MIDI
soundtrack (:func:`game_midi_songs`), rendered through libfluidsynth.
"""

from __future__ import annotations

import ctypes
import glob
import hashlib
import json
import os
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from . import protocol

SR = 22050
CACHE = Path(os.environ.get("MUSICAAS_BENCH_CACHE", "~/.cache/musicaas-bench")).expanduser()
#: Never used here (reserved for independent evaluation by the project).
RESERVED_PACKAGES = frozenset({"wesnoth-1.16-music", "warzone2100-music", "fretsonfire-songs-muldjord", "fretsonfire-songs-sectoid"})

# --------------------------------------------------------------------------- fetching


def fetch_deb(package: str) -> Path:
    """``apt-get download`` (once) into ``CACHE/debs`` and ``dpkg-deb -x`` (once) into ``CACHE/x/<package>``."""
    if package in RESERVED_PACKAGES:
        raise ValueError(f"{package} is reserved for independent evaluation and must not be used")
    debs, root = CACHE / "debs", CACHE / "x" / package
    if (root / ".extracted").exists():
        return root
    debs.mkdir(parents=True, exist_ok=True)
    if not sorted(debs.glob(f"{package}_*.deb")):
        proc = subprocess.run(["apt-get", "download", package], cwd=debs, capture_output=True, text=True)
        if not sorted(debs.glob(f"{package}_*.deb")):
            raise RuntimeError(f"apt-get download {package} failed: {proc.stderr.strip()[-300:]}")
    deb = sorted(debs.glob(f"{package}_*.deb"))[-1]
    root.mkdir(parents=True, exist_ok=True)
    subprocess.run(["dpkg-deb", "-x", str(deb), str(root)], check=True)
    (root / ".extracted").write_text(deb.name)
    return root


#: libfluidsynth3 and the libraries it needs that a slim Debian 12 image lacks.
FLUIDSYNTH_DEBS = (
    "libfluidsynth3", "libinstpatch-1.0-2", "libjack-jackd2-0", "libpulse0", "libsdl2-2.0-0", "libsndfile1",
    "libsamplerate0", "libwayland-egl1", "libwayland-cursor0", "libwayland-client0", "libdecor-0-0", "libflac12",
    "libvorbis0a", "libvorbisenc2", "libopus0", "libogg0", "libmpg123-0", "libmp3lame0", "libasyncns0",
    "libxkbcommon0", "libx11-6", "libxcursor1", "libxext6", "libxi6", "libxfixes3", "libxrandr2", "libxss1",
)


def setup_worker_environment() -> None:
    """One thread per process for the numeric libraries, and libfluidsynth on the library path
    (set before worker processes start, which inherit it)."""
    for var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "NUMBA_NUM_THREADS"):
        os.environ[var] = "1"
    lib_dirs = fluidsynth_library_dirs()
    if lib_dirs:
        os.environ["LD_LIBRARY_PATH"] = ":".join(lib_dirs + [p for p in os.environ.get("LD_LIBRARY_PATH", "").split(":") if p])
    soundfont("fluidr3"), soundfont("musescore-lite")


def fluidsynth_library_dirs() -> list[str]:
    """Folders to put on ``LD_LIBRARY_PATH`` so that ``libfluidsynth.so.3`` loads: none when
    the system has it, else the extracted Debian packages (fetched once)."""
    if glob.glob("/usr/lib/*/libfluidsynth.so.3") or glob.glob("/usr/lib/libfluidsynth.so.3"):
        return []
    dirs = []
    for package in FLUIDSYNTH_DEBS:
        if subprocess.run(["dpkg", "-s", package], capture_output=True).returncode == 0:
            continue  # installed on the system
        try:
            root = fetch_deb(package)
        except RuntimeError:
            continue
        for d in (root / "usr/lib/x86_64-linux-gnu", root / "usr/lib/x86_64-linux-gnu/pulseaudio"):
            if d.is_dir():
                dirs.append(str(d))
    return dirs


def soundfont(name: str) -> Path:
    """Path of a Debian-packaged SoundFont: ``"fluidr3"`` or ``"musescore-lite"``."""
    if name == "fluidr3":
        for p in (Path("/usr/share/sounds/sf2/FluidR3_GM.sf2"),):
            if p.exists():
                return p
        return fetch_deb("fluid-soundfont-gm") / "usr/share/sounds/sf2/FluidR3_GM.sf2"
    if name == "musescore-lite":
        p = Path("/usr/share/sounds/sf3/MuseScore_General_Lite.sf3")
        return p if p.exists() else fetch_deb("musescore-general-soundfont-small") / "usr/share/sounds/sf3/MuseScore_General_Lite.sf3"
    raise ValueError(f"unknown SoundFont {name!r}")


# --------------------------------------------------------------------------- pieces


@dataclass(frozen=True)
class Piece:
    """A piece: id (``chorale:bwv66.6`` / ``folk:essen-erk20-003``), reference key (``"F major"``),
    beats per bar (2, 3 or 4), notes (onset_q, duration_q, pitch) with onset 0 on a bar line, the
    beat's length in quarter notes (1; 1.5 for the dotted-quarter beat of 6/8) and the written metre."""

    piece_id: str
    kind: str
    key: str
    beats_per_bar: int
    notes: tuple[tuple[float, float, int], ...]
    beat_q: float = 1.0
    metre: str = ""

    @property
    def metre_text(self) -> str:
        return self.metre or f"{self.beats_per_bar}/4"


def _key_text(key_index: int) -> str:
    from musicaas.keys import Key

    return str(Key.from_index(int(key_index)))


def seen_chorales() -> frozenset[str]:
    """Chorale piece ids already used while building the analyzer (always in the development part).

    * the 17 calibration chorales of ``bench/analyzer_accuracy.py`` (``CALIBRATION``);
    * the chorales its default run and its ``--offset 2`` run select (``select_chorales(24, 0)``
      and ``(24, 2)``: the thresholds of the key finder and the tempo estimate were set
      looking at these), computed once by calling it and cached;
    * every file ``bench/key_accuracy.py --n 60`` can visit (every ``len // 60``-th);
    * the first 20 files of :func:`musicaas.chorales.iter_chorales` (demo, tests).

    Ids are piece groups (``bwv248.23-2`` counts as ``bwv248.23``).
    """
    cache_file = _cache_path("seen-chorales.json")
    if cache_file.exists():
        return frozenset(json.loads(cache_file.read_text()))
    import sys

    from music21 import corpus

    bench_dir = str(Path(__file__).resolve().parents[1])
    if bench_dir not in sys.path:
        sys.path.insert(0, bench_dir)
    import analyzer_accuracy  # bench/analyzer_accuracy.py

    seen = set(analyzer_accuracy.CALIBRATION)
    for offset in (0, 2):
        seen.update(c[0] for c in analyzer_accuracy.select_chorales(24, offset))
    scores = sorted(str(p) for p in corpus.getComposer("bach") if str(p).endswith((".mxl", ".xml", ".musicxml")))
    names = [os.path.basename(p).rsplit(".", 1)[0] for p in scores]
    seen.update(names[:: max(1, len(names) // 60)])
    every = sorted(Path(str(p)).stem for p in corpus.getComposer("bach"))
    seen.update(every[(i + i // len(every)) % len(every)] for i in range(0, 20 * 7, 7))
    ids = sorted({f"chorale:{n.split('-')[0]}" for n in seen})
    cache_file.parent.mkdir(parents=True, exist_ok=True)
    cache_file.write_text(json.dumps(ids))
    return frozenset(ids)


def _cache_path(name: str) -> Path:
    return CACHE / "analysis_eval" / name


def ends_on_tonic(notes, key_index: int) -> bool:
    """Whether the lowest note sounding at the end is the written key's tonic (as
    ``bench/analyzer_accuracy.py`` requires): chorales with a modal or half-cadence ending,
    whose written key is not the key heard, are left out."""
    end = max(n[0] + n[1] for n in notes)
    final = [n[2] for n in notes if abs(n[0] + n[1] - end) < 1e-6]
    return bool(final) and min(final) % 12 == int(key_index) % 12


def load_chorale_pieces(n: int, *, seen: frozenset[str], per_split: bool = True) -> list[Piece]:
    """``n`` chorales (one file per piece group, ending on the tonic: :func:`ends_on_tonic`)
    taken in hash order; half from each part
    when ``per_split`` (the seen pieces count in the development part). Parsed records are
    cached in ``CACHE/analysis_eval/chorales.json``."""
    from musicaas_model import data

    cache_file = _cache_path("chorales.json")
    cache: dict = json.loads(cache_file.read_text()) if cache_file.exists() else {}
    paths = {}
    for p in data.corpus_paths():
        stem = Path(str(p)).name.rsplit(".", 1)[0]
        group = stem.split("-")[0]
        paths.setdefault(f"chorale:{group}", []).append(p)
    want = {protocol.DEV: (n + 1) // 2, protocol.HELD_OUT: n // 2} if per_split else None
    chosen: list[Piece] = []
    dirty = False
    for pid in protocol.hash_order(paths):
        split = protocol.split_of(pid, seen=seen)
        if want is not None and want[split] <= 0 or want is None and len(chosen) >= n:
            continue
        if want is not None and all(v <= 0 for v in want.values()):
            break
        rec = cache.get(pid, "missing")
        if rec == "missing":
            rec = None
            for path in sorted(paths[pid], key=lambda q: Path(str(q)).name):
                try:
                    r = data._parse_chorale(path)
                except Exception:  # a few encodings do not parse
                    r = None
                if r is not None:
                    rec = {"key_index": r.key_index, "ts": list(r.time_signature), "notes": r.notes}
                    break
            cache[pid] = rec
            dirty = True
        if rec is None or not ends_on_tonic(rec["notes"], rec["key_index"]):
            continue
        chosen.append(Piece(pid, "chorale", _key_text(rec["key_index"]), int(rec["ts"][0]),
                            tuple(tuple(x) for x in rec["notes"])))
        if want is not None:
            want[split] -= 1
    if dirty:
        cache_file.parent.mkdir(parents=True, exist_ok=True)
        cache_file.write_text(json.dumps(cache))
    return chosen


def load_folk_pieces(n: int, *, pool: int = 240) -> list[Piece]:
    """``n`` Essen folk tunes (the generator's files and key rule,
    :func:`musicaas_model.data.load_folk`, first ``pool`` tunes), half from each part, in hash order."""
    from musicaas_model import data

    records = data.load_folk(_cache_path(f"folk-{pool}.json"), progress=False, max_pieces=pool)
    by_id = {f"folk:{r.name}": r for r in records}
    return [Piece(pid, "folk", _key_text(by_id[pid].key_index), int(by_id[pid].time_signature[0]),
                  tuple(tuple(x) for x in by_id[pid].notes)) for pid in _half_per_split(by_id, n)]


def _half_per_split(ids, n: int) -> list[str]:
    """``n`` of ``ids`` in hash order, (n + 1) // 2 from the development part and n // 2 held out."""
    want = {protocol.DEV: (n + 1) // 2, protocol.HELD_OUT: n // 2}
    chosen = []
    for pid in protocol.hash_order(ids):
        split = protocol.split_of(pid)
        if want[split] > 0:
            chosen.append(pid)
            want[split] -= 1
    return chosen


#: Metres of the Essen files beyond the generator's 4/4 and 3/4 that the evaluation also plays:
#: written metre -> (beats per bar, beat length in quarter notes). 5/4 is not here: the
#: generator's nine Essen files hold one 5/4 tune.
EXTRA_METRES = {"2/4": (2, 1.0), "6/8": (2, 1.5)}


def load_folk_metre_pieces(n: int, *, metres=tuple(EXTRA_METRES), pool: int = 240) -> list[Piece]:
    """``n`` Essen tunes in the metres of :data:`EXTRA_METRES` from the generator's files
    (:data:`musicaas_model.data.FOLK_FILES`, the same key rule as the generator:
    ``musicaas_model.data._folk_key``), the first ``pool`` such tunes, half from each part in
    hash order. Cached in ``CACHE/analysis_eval/folk-metres-<pool>.json``."""
    from musicaas_model import data

    cache_file = _cache_path(f"folk-metres-{pool}.json")
    if cache_file.exists():
        records = json.loads(cache_file.read_text())
    else:
        import music21

        records = []
        for stem in data.FOLK_FILES:
            if len(records) >= pool:
                break
            opus = music21.corpus.parse(f"essenFolksong/{stem}.abc")
            for i, score in enumerate(getattr(opus, "scores", [opus])):
                if len(records) >= pool:
                    break
                try:
                    rec = _parse_metre_tune(data, score, f"essen-{stem}-{i:03d}")
                except Exception:  # a few tunes do not parse
                    rec = None
                if rec is not None:
                    records.append(rec)
        cache_file.parent.mkdir(parents=True, exist_ok=True)
        cache_file.write_text(json.dumps(records))
    by_id = {f"folk:{r['name']}": r for r in records if r["metre"] in metres}
    chosen = []
    for pid in _half_per_split(by_id, n):
        r = by_id[pid]
        bpb, beat_q = EXTRA_METRES[r["metre"]]
        chosen.append(Piece(pid, "folk", _key_text(r["key_index"]), bpb, tuple(tuple(x) for x in r["notes"]),
                            beat_q=beat_q, metre=r["metre"]))
    return chosen


def _parse_metre_tune(data, score, name: str) -> dict | None:
    """One Essen tune in a metre of :data:`EXTRA_METRES` as a JSON record, or None (other metre,
    metre changes, no clear key). Pickups are padded so that onset 0 is a bar line."""
    flat = score.flatten()
    sigs = {f"{ts.numerator}/{ts.denominator}" for ts in flat.getElementsByClass("TimeSignature")}
    if len(sigs) != 1 or next(iter(sigs)) not in EXTRA_METRES:
        return None
    metre = next(iter(sigs))
    key = data._folk_key(score, flat)
    if key is None:
        return None
    bpb, beat_q = EXTRA_METRES[metre]
    parts = list(score.parts) or [score]
    shift = data.pickup_shift(parts, bpb * beat_q)
    notes = []
    for part in parts:
        for el in part.stripTies().flatten().notes:
            dur = float(el.quarterLength)
            if dur > 0:
                notes.extend((round(float(el.offset) + shift, 4), round(dur, 4), int(p.midi)) for p in el.pitches)
    if not notes:
        return None
    notes.sort()
    return {"name": name, "key_index": key.index, "metre": metre, "notes": notes}


# --------------------------------------------------------------------------- sources

#: Ensembles per family: (program of the voices at or above middle C, program below), GM 0-127.
FAMILIES = {
    "piano": ((0, 0), (1, 1), (4, 4)),
    "chromatic perc": ((11, 12), (8, 8), (13, 13)),
    "organ": ((19, 19), (16, 16), (20, 20)),
    "guitar": ((24, 24), (25, 25), (27, 27)),
    "strings": ((40, 42), (48, 48), (49, 49)),
    "choir": ((52, 52), (53, 53), (54, 54)),
    "brass": ((56, 57), (60, 58), (61, 61)),
    "reeds": ((68, 70), (71, 70), (65, 67)),
    "pipes (flutes)": ((73, 73), (74, 74), (72, 73)),
    "synth pad": ((89, 89), (90, 90), (88, 88)),
}
#: TimGM6mb under symusic 0.5.9 plays only some programs in tune (musicaas.render.IN_TUNE):
#: its families, with in-tune ensembles only (so the family heard is the family named).
TIMGM_FAMILIES = {
    "piano": ((5, 5),),
    "chromatic perc": ((10, 10), (14, 14)),
    "strings": ((48, 48), (44, 45)),
    "brass": ((56, 56),),
    "reeds": ((65, 67), (64, 66)),
    "pipes (flutes)": ((73, 73), (74, 74), (72, 73)),
}
SOURCES = {
    "timgm6mb/symusic": TIMGM_FAMILIES,
    "fluidr3/fluidsynth": FAMILIES,
    "musescore-lite/fluidsynth": FAMILIES,
}


#: The "program" of drum notes in the note lists: General MIDI percussion (channel 10), key = instrument.
DRUM_PROGRAM = 128
#: General MIDI percussion keys of the kit.
KICK, SNARE, CLOSED_HAT = 36, 38, 42


def drum_notes(piece: Piece, spq: float, cap_s: float, rng) -> list[tuple[float, float, int, int, int]]:
    """A plain drum kit playing the piece's metre from its first bar line to its last note
    (within ``cap_s``): kick on the downbeat (and on beat 3 of 4/4), snare on the other beats of
    2/4 and 4/4 and on beats 2-3 of 3/4 (softer), closed hi-hat on every eighth note; in 6/8 the
    kick on beat 1, the snare on beat 2 (dotted quarters), the hat on every eighth.
    (onset_s, duration_s, key, velocity, DRUM_PROGRAM) tuples; velocities jitter by +-6."""
    end_q = min(max(n[0] + n[1] for n in piece.notes), cap_s / spq)
    first_q = min(n[0] for n in piece.notes)
    bar_q = piece.beats_per_bar * piece.beat_q
    out = []

    def hit(q: float, key: int, vel: int) -> None:
        if first_q - 1e-6 <= q < end_q:
            out.append((q * spq, 0.1, key, int(np.clip(vel + rng.randint(-6, 6), 1, 127)), DRUM_PROGRAM))

    bar = np.floor(first_q / bar_q) * bar_q
    while bar < end_q:
        for b in range(piece.beats_per_bar):
            q = bar + b * piece.beat_q
            if b == 0 or (piece.beats_per_bar == 4 and b == 2):
                hit(q, KICK, 96)
            else:
                hit(q, SNARE, 84 if piece.beats_per_bar != 3 else 60)
        for e in np.arange(bar, bar + bar_q - 1e-9, 0.5):
            hit(float(e), CLOSED_HAT, 56)
        bar += bar_q
    return out


def notes_for(piece: Piece, plan: protocol.RenderPlan, *, cap_s: float = protocol.CAP_S):
    """(onset_s, duration_s, pitch, velocity, program) of a render (before detuning); with
    ``plan.drums``, the kit of :func:`drum_notes` too (program :data:`DRUM_PROGRAM`)."""
    rng = protocol.item_rng(plan.item_id + ":velocity")
    vel = dict((d[0], d[1]) for d in protocol.DYNAMICS)[plan.dynamics]
    spq = 60.0 / (protocol.beat_tempo(plan.tempo_bpm, piece.beat_q) * piece.beat_q)
    out = []
    for onset_q, dur_q, pitch in piece.notes:
        if onset_q * spq >= cap_s:
            continue
        p = int(pitch) + plan.transpose
        program = plan.programs[0] if p >= 60 else plan.programs[1]
        bar_q = piece.beats_per_bar * piece.beat_q
        v = int(np.clip(vel + rng.randint(-8, 8) + (6 if abs(onset_q % bar_q) < 1e-6 else 0), 1, 127))
        out.append((onset_q * spq, max(dur_q * spq - 0.01, 0.02), p, v, program))
    if plan.drums:
        out.extend(drum_notes(piece, spq, cap_s, protocol.item_rng(plan.item_id + ":drums")))
    return out


def render_timgm(notes) -> np.ndarray:
    """The project's renderer: :func:`musicaas.render.render_midi` (TimGM6mb, symusic)."""
    import symusic

    from musicaas.render import render_midi

    score = symusic.Score(480)
    score.tempos.append(symusic.Tempo(0, 120.0))
    tracks = {}
    for onset, dur, pitch, vel, program in notes:
        if program not in tracks:
            drum = program == DRUM_PROGRAM
            tracks[program] = symusic.Track(name=f"p{program}", program=0 if drum else program, is_drum=drum)
        tracks[program].notes.append(symusic.Note(int(round(onset * 960)), max(1, int(round(dur * 960))), pitch, vel))
    for t in tracks.values():
        score.tracks.append(t)
    return render_midi(score.dumps_midi(), sample_rate_hz=SR)


class FluidSynth:
    """libfluidsynth 2 through ctypes: one synthesiser, one SoundFont, rendered offline from a note list.

    Reverb and chorus are off (the variation adds the same room to every source)."""

    def __init__(self, sf_path: Path, sample_rate_hz: int = SR):
        lib = ctypes.CDLL("libfluidsynth.so.3")
        for name, res in (("new_fluid_settings", ctypes.c_void_p), ("new_fluid_synth", ctypes.c_void_p)):
            getattr(lib, name).restype = res
        lib.new_fluid_synth.argtypes = [ctypes.c_void_p]
        for name in ("fluid_synth_sfload", "fluid_synth_noteon", "fluid_synth_noteoff", "fluid_synth_program_change",
                     "fluid_synth_write_float", "fluid_synth_system_reset", "fluid_settings_setnum", "fluid_settings_setint"):
            getattr(lib, name).restype = ctypes.c_int
        lib.fluid_settings_setnum.argtypes = [ctypes.c_void_p, ctypes.c_char_p, ctypes.c_double]
        lib.fluid_settings_setint.argtypes = [ctypes.c_void_p, ctypes.c_char_p, ctypes.c_int]
        lib.fluid_synth_sfload.argtypes = [ctypes.c_void_p, ctypes.c_char_p, ctypes.c_int]
        lib.fluid_synth_noteon.argtypes = [ctypes.c_void_p, ctypes.c_int, ctypes.c_int, ctypes.c_int]
        lib.fluid_synth_noteoff.argtypes = [ctypes.c_void_p, ctypes.c_int, ctypes.c_int]
        lib.fluid_synth_program_change.argtypes = [ctypes.c_void_p, ctypes.c_int, ctypes.c_int]
        lib.fluid_synth_system_reset.argtypes = [ctypes.c_void_p]
        lib.fluid_synth_write_float.argtypes = [ctypes.c_void_p, ctypes.c_int, ctypes.c_void_p, ctypes.c_int, ctypes.c_int,
                                                ctypes.c_void_p, ctypes.c_int, ctypes.c_int]
        self._lib = lib
        settings = lib.new_fluid_settings()
        lib.fluid_settings_setnum(settings, b"synth.sample-rate", float(sample_rate_hz))
        lib.fluid_settings_setnum(settings, b"synth.gain", 0.4)
        lib.fluid_settings_setint(settings, b"synth.reverb.active", 0)
        lib.fluid_settings_setint(settings, b"synth.chorus.active", 0)
        lib.fluid_settings_setint(settings, b"synth.polyphony", 256)
        lib.fluid_settings_setint(settings, b"synth.cpu-cores", 1)
        self._settings = settings
        self._synth = lib.new_fluid_synth(settings)
        if lib.fluid_synth_sfload(self._synth, str(sf_path).encode(), 1) < 0:
            raise RuntimeError(f"fluidsynth could not load {sf_path}")
        self.sample_rate_hz = sample_rate_hz

    def _write(self, n: int, out: list) -> None:
        left = np.zeros(n, dtype=np.float32)
        right = np.zeros(n, dtype=np.float32)
        self._lib.fluid_synth_write_float(self._synth, n, left.ctypes.data, 0, 1, right.ctypes.data, 0, 1)
        out.append(0.5 * (left + right))

    def render(self, notes, tail_s: float = 2.0) -> np.ndarray:
        lib, synth = self._lib, self._synth
        lib.fluid_synth_system_reset(synth)
        channels = {}
        for program in sorted({n[4] for n in notes} - {DRUM_PROGRAM}):
            ch = len(channels)
            ch = ch if ch < 9 else ch + 1  # skip the drum channel
            channels[program] = ch
            lib.fluid_synth_program_change(synth, ch, program)
        channels[DRUM_PROGRAM] = 9  # General MIDI percussion: fluidsynth's channel 10 holds the drum bank
        events = []
        for onset, dur, pitch, vel, program in notes:
            events.append((onset, 1, channels[program], pitch, vel))
            events.append((onset + dur, 0, channels[program], pitch, 0))
        events.sort(key=lambda e: (e[0], e[1]))  # note-offs before note-ons at the same instant
        out, now = [], 0
        for t, on, ch, pitch, vel in events:
            target = int(round(t * self.sample_rate_hz))
            if target > now:
                self._write(target - now, out)
                now = target
            if on:
                lib.fluid_synth_noteon(synth, ch, pitch, vel)
            else:
                lib.fluid_synth_noteoff(synth, ch, pitch)
        self._write(int(tail_s * self.sample_rate_hz), out)
        return np.concatenate(out) if out else np.zeros(0, dtype=np.float32)


def add_room(y: np.ndarray, reverb: str, seed: int) -> np.ndarray:
    """Convolve with a synthetic room (exponentially decaying noise, RT60 and wet share from
    :data:`protocol.REVERBS`); ``dry`` returns ``y``."""
    from scipy.signal import fftconvolve

    _, rt60, wet = next(r for r in protocol.REVERBS if r[0] == reverb)
    if rt60 <= 0:
        return y
    rng = np.random.default_rng(seed)
    t = np.arange(int(rt60 * SR)) / SR
    ir = rng.standard_normal(t.size) * np.exp(-6.91 * t / rt60)  # -60 dB at rt60
    ir[: int(0.005 * SR)] *= np.linspace(0, 1, int(0.005 * SR))
    ir /= np.sqrt(np.sum(ir ** 2))
    tail = fftconvolve(y, ir)[: y.size]
    dry_rms, tail_rms = np.sqrt(np.mean(y ** 2)) + 1e-12, np.sqrt(np.mean(tail ** 2)) + 1e-12
    return ((1 - wet) * y + wet * tail * dry_rms / tail_rms).astype(np.float32)


def detune(y: np.ndarray, cents: float) -> np.ndarray:
    """Raise the pitch by ``cents`` (negative: lower) by resampling, which also shortens the
    audio by the same factor (the reference times and tempo are scaled to match)."""
    import librosa

    factor = 2.0 ** (cents / 1200.0)
    if abs(cents) < 1e-6:
        return y
    return librosa.resample(y, orig_sr=SR * factor, target_sr=SR, res_type="soxr_hq").astype(np.float32)


def finish(y: np.ndarray, plan: protocol.RenderPlan) -> np.ndarray:
    """Room, detuning and output level of a raw render."""
    seed = int(hashlib.sha256(plan.item_id.encode()).hexdigest()[:8], 16)
    y = add_room(np.asarray(y, dtype=np.float32), plan.reverb, seed)
    y = detune(y, plan.detune_cents)
    return to_peak(y, dict((d[0], d[2]) for d in protocol.DYNAMICS)[plan.dynamics])


def to_peak(y: np.ndarray, peak: float) -> np.ndarray:
    """``y`` scaled to the absolute peak ``peak`` (float32; silence stays as it is)."""
    top = float(np.max(np.abs(y))) if y.size else 0.0
    return (y * (peak / top)).astype(np.float32) if top > 0 else np.asarray(y, dtype=np.float32)


# --------------------------------------------------------------------------- real recordings

REAL_PACKAGES = ("planetblupi-music-ogg", "planetblupi-music-midi")
#: Excerpt of each real recording: start and length, seconds.
REAL_EXCERPT_S = (30.0, 60.0)


@dataclass(frozen=True)
class Recording:
    piece_id: str
    path: Path
    tempo_bpm: float


def real_recordings() -> list[Recording]:
    """Planet Blupi's soundtrack: each ``musicNNN.ogg`` is the game authors' rendering of
    ``musicNNN.mid`` (same length within 4 s, one tempo event, 4/4), so the MIDI tempo is the truth."""
    import symusic

    ogg = fetch_deb("planetblupi-music-ogg") / "usr/share/planetblupi/music"
    mid = fetch_deb("planetblupi-music-midi") / "usr/share/planetblupi/music"
    out = []
    for path in sorted(ogg.glob("music*.ogg")):
        midi = mid / (path.stem + ".mid")
        if not midi.exists():
            continue
        score = symusic.Score(str(midi))
        if len(score.tempos) != 1:
            continue  # tempo changes: no single truth
        out.append(Recording(f"real:planetblupi/{path.stem}", path, round(float(score.tempos[0].qpm), 2)))
    return out


def load_recording(rec: Recording, *, excerpt=REAL_EXCERPT_S) -> np.ndarray:
    import librosa

    y, _ = librosa.load(str(rec.path), sr=SR, mono=True, offset=excerpt[0], duration=excerpt[1])
    return y.astype(np.float32)


# --------------------------------------------------------------------------- drummed game music (development only)

#: Debian package of the drummed game-music MIDI files (OpenTTD's OpenMSX soundtrack, GPL-2.0),
#: in the development part only (``devcache``): scored in the tuning reports, never fitted and
#: never in the evaluation, whose real-music set stays Planet Blupi's recordings (also
#: MIDI-driven game music with drums).
GAME_MIDI_PACKAGE = "openttd-openmsx"
#: Excerpt of each game-music render: start and length, seconds (as the real recordings').
GAME_MIDI_EXCERPT_S = (10.0, 60.0)
#: SoundFonts each song is rendered with (one item per SoundFont).
GAME_MIDI_SOUNDFONTS = ("fluidr3", "musescore-lite")


def game_midi_songs() -> list["Recording"]:
    """The OpenMSX songs with one tempo (every tempo event within 1 % of the first: 27 of 31
    files), their quarter-note tempo in BPM being the truth, as for the real recordings
    (a :class:`Recording` whose ``path`` is the MIDI file)."""
    import symusic

    root = fetch_deb(GAME_MIDI_PACKAGE) / "usr/share/games/openttd/baseset/openmsx"
    out = []
    for path in sorted(root.glob("*.mid")):
        qpm = [t.qpm for t in symusic.Score(str(path)).tempos]
        if qpm and max(qpm) <= 1.01 * min(qpm):
            out.append(Recording(f"game:openmsx/{path.stem}", path, round(float(qpm[0]), 2)))
    return out


_GAME_SYNTHS: dict[str, "FluidSynth"] = {}  # one synthesiser per SoundFont and process


def render_game_song(song: "Recording", soundfont_name: str) -> tuple[np.ndarray, dict]:
    """The excerpt (:data:`GAME_MIDI_EXCERPT_S`) of one song rendered with one SoundFont,
    float32 at :data:`SR`, peak 0.8, and its references: bpm_ref and beats_ref (the
    quarter-note grid from the file's start, seconds within the excerpt)."""
    import symusic

    score = symusic.Score(str(song.path)).to("second")
    notes = [(float(n.time), float(max(n.duration, 0.05)), int(n.pitch), int(n.velocity),
              DRUM_PROGRAM if tr.is_drum else int(tr.program)) for tr in score.tracks for n in tr.notes]
    if soundfont_name not in _GAME_SYNTHS:
        _GAME_SYNTHS[soundfont_name] = FluidSynth(soundfont(soundfont_name))
    y = _GAME_SYNTHS[soundfont_name].render(notes)
    start, length = GAME_MIDI_EXCERPT_S
    y = y[int(start * SR): int((start + length) * SR)]
    y = to_peak(y, 0.8)
    period = 60.0 / song.tempo_bpm
    beats = np.arange(np.ceil(start / period), np.floor((start + len(y) / SR) / period) + 1) * period - start
    return y, {"bpm_ref": song.tempo_bpm, "beats_ref": beats[beats >= 0]}


def have_essentia_venv() -> Path | None:
    py = CACHE / "peer-venv" / "bin" / "python"
    return py if py.exists() else None


def ensure_essentia_venv() -> Path | None:
    """The separate venv holding Essentia (AGPL: a peer, never a dependency of the project);
    created once with ``pip install --pre essentia 'numpy<2'``. None when that fails."""
    py = have_essentia_venv()
    if py is None:
        venv = CACHE / "peer-venv"
        try:
            subprocess.run([shutil.which("python3") or "python3", "-m", "venv", str(venv)], check=True, capture_output=True)
            subprocess.run([str(venv / "bin/pip"), "install", "-q", "--pre", "essentia", "numpy<2"], check=True,
                           capture_output=True, timeout=600)
        except (subprocess.SubprocessError, OSError):
            return None
        py = have_essentia_venv()
    ok = py is not None and subprocess.run([str(py), "-c", "import essentia.standard"], capture_output=True).returncode == 0
    return py if ok else None
