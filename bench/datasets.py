"""Labelled recordings for the benchmarks, assembled from Debian packages of free games.

No model in this project was trained on these recordings, and their labels (composer,
album) come from the packages themselves, never from listening:

==========================  ======  ==========================================================
package                     tracks  where the composer label comes from
==========================  ======  ==========================================================
``supertux-data``           47      the Ogg ``ARTIST`` comment of each file (untagged files
                                    get no composer: they enter the album task only)
``singularity-music``       16      ``ARTIST`` comment (Maxstack); the album from the
                                    ``ALBUM`` comment (two albums: the original soundtrack
                                    and "Advanced Research")
``hyperrogue-music``        17      ``ARTIST`` comment; untagged ``hr-<name>-*.ogg`` files
                                    carry the composer in the name (``hr-domina-*``)
``pushover-data``           10      ``debian/copyright``: the holder marked "(Music ...)"
``extremetuxracer-data``    6       ``music/readme`` ("<name> composed: <files>")
``lincity-ng-data``         3       the file name, ``"NN - <composer> - <title>.ogg"``
``frozen-bubble-data``      3       ``debian/copyright`` of ``fb-music-high`` (the same game's
                                    music package): "Upstream Author: <name>"
``asc-music``               3       ``debian/copyright``: the holder of ``Files: *`` (the
                                    three MP3s are the package's only content)
==========================  ======  ==========================================================

The album is the package's soundtrack (the game), except where the package's own tags
split it (``singularity-music``). Tracks shorter than :data:`MIN_DURATION_S` (jingles,
sound effects) are left out, and at most :data:`MAX_PER_COMPOSER` tracks per composer
are kept (in file-name order) so that no composer dominates the rankings.

Fetching: ``apt-get download`` into ``~/.cache/musicaas-bench/debs`` and ``dpkg-deb -x``
into ``~/.cache/musicaas-bench/x/<package>`` (about 460 MB of packages, once). Nothing
is copied into the repository. The analysed copies have their tags removed
(:func:`untagged_copy`: the file is copied to a temporary folder and its Vorbis comments
/ ID3 frames deleted with mutagen), so that no label can leak into an analysis.

Kept out for independent evaluation, and refused by :func:`fetch_package`:
:data:`FORBIDDEN` (``wesnoth-1.16-music``, ``warzone2100-music``,
``fretsonfire-songs-muldjord``, ``fretsonfire-songs-sectoid``).
"""

from __future__ import annotations

import contextlib
import glob
import gzip
import os
import re
import shutil
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator, Mapping

#: Packages reserved for independent evaluation: never downloaded or used here.
FORBIDDEN = frozenset({"wesnoth-1.16-music", "warzone2100-music", "fretsonfire-songs-muldjord", "fretsonfire-songs-sectoid"})
#: Root of everything the benchmarks download or cache (``MUSICAAS_BENCH_CACHE`` overrides it).
CACHE_DIR = Path(os.environ.get("MUSICAAS_BENCH_CACHE", "~/.cache/musicaas-bench")).expanduser()
#: Shorter tracks (jingles, stingers, sound effects) are left out, seconds.
MIN_DURATION_S = 20.0
#: Most tracks kept per composer.
MAX_PER_COMPOSER = 16
#: Audio file suffixes read.
AUDIO_SUFFIXES = (".ogg", ".mp3", ".flac")


@dataclass(frozen=True)
class Recording:
    """One labelled recording.

    Attributes
    ----------
    package : str
        Debian package it comes from.
    path : Path
        The file as the package installs it (under the extraction folder; tags intact).
    title : str
    composer : str or None
        None when the package does not say.
    album : str
    duration_s : float, seconds
    label_source : str
        Where the composer label was read (``"tag"``, ``"readme"``, ``"copyright"``, ``"filename"``).
    """

    package: str
    path: Path
    title: str
    composer: str | None
    album: str
    duration_s: float
    label_source: str

    @property
    def key(self) -> str:
        """Stable identifier: ``<package>/<path inside the package>``."""
        parts = self.path.parts
        i = parts.index(self.package) if self.package in parts else 0
        return "/".join(parts[i:])


# ---------------------------------------------------------------------- label parsing (pure)


def normalise_name(name: str) -> str:
    """A composer name as a label: whitespace collapsed, a bare web address reduced to its host."""
    name = " ".join(str(name).split()).strip()
    m = re.fullmatch(r"(?:https?://)?(?:www\.)?([^/\s]+\.[a-z]{2,})/?", name, flags=re.I)
    return m.group(1).lower() if m else name


def parse_etr_readme(text: str) -> dict[str, str]:
    """``{file name: composer}`` from Extreme Tux Racer's ``music/readme``.

    The file lists ``<Name> <email> composed:`` followed by indented file names.
    """
    out: dict[str, str] = {}
    composer = None
    for line in text.splitlines():
        m = re.match(r"^(\S.*?)\s*(?:<[^>]*>)?\s*composed:\s*$", line)
        if m:
            composer = normalise_name(m.group(1))
            continue
        name = line.strip()
        if composer and line[:1].isspace() and name:
            out[name] = composer
        elif not name:
            continue
        else:
            composer = None
    return out


def parse_numbered_filename(filename: str) -> tuple[str, str] | None:
    """``(composer, title)`` of a file named ``"NN - <composer> - <title>.<ext>"``; None otherwise."""
    stem = Path(filename).stem
    m = re.fullmatch(r"\s*\d+\s*-\s*(.+?)\s+-\s+(.+?)\s*", stem)
    return (normalise_name(m.group(1)), m.group(2)) if m else None


def parse_hyperrogue_filename(filename: str) -> str | None:
    """The composer a HyperRogue music file names (``hr-<composer>-<piece>.ogg``); None otherwise."""
    m = re.fullmatch(r"hr-([a-z]+)-[^/]+", Path(filename).stem + "-", flags=re.I)
    return m.group(1).capitalize() if m else None


def copyright_music_holder(text: str) -> str | None:
    """The holder a ``debian/copyright`` marks as the music's author: ``<years> <name> (Music ...)``."""
    for line in text.splitlines():
        m = re.search(r"\d{4}(?:\s*-\s*\d{4})?,?\s+([^<(]+?)\s*(?:<[^>]*>\s*)?\((?=[^)]*music)[^)]*\)", line, flags=re.I)
        if m:
            return normalise_name(m.group(1))
    return None


def copyright_upstream_author(text: str) -> str | None:
    """The ``Upstream Author: <name> <email>`` of an old-style ``debian/copyright``."""
    m = re.search(r"^Upstream Authors?:\s*([^<\n]+?)\s*(?:<[^>]*>)?\s*$", text, flags=re.M | re.I)
    return normalise_name(m.group(1)) if m else None


def copyright_files_star_holder(text: str) -> str | None:
    """The first holder of the ``Files: *`` stanza of a machine-readable ``debian/copyright``."""
    for stanza in re.split(r"\n\s*\n", text):
        if re.search(r"^Files:\s*\*\s*$", stanza, flags=re.M):
            m = re.search(r"^Copyright:\s*(?:\d{4}(?:\s*-\s*\d{4})?,?\s+)?([^<\n]+?)\s*(?:<[^>]*>)?\s*$", stanza, flags=re.M)
            if m:
                return normalise_name(m.group(1))
    return None


def tag_value(tags: Mapping | None, *names: str) -> str | None:
    """First non-empty value of any of ``names`` (case-insensitive) in a mutagen tag mapping."""
    if not tags:
        return None
    lowered = {str(k).lower(): v for k, v in tags.items()}
    for name in names:
        v = lowered.get(name.lower())
        if v is None:
            continue
        v = v[0] if isinstance(v, (list, tuple)) and v else v
        v = str(getattr(v, "text", [v])[0] if hasattr(v, "text") else v).strip()
        if v:
            return v
    return None


def cap_per_composer(recordings: list[Recording], cap: int = MAX_PER_COMPOSER) -> list[Recording]:
    """At most ``cap`` recordings per composer (the first ones, in the given order); unknown composers are not capped."""
    seen: dict[str, int] = {}
    out = []
    for r in recordings:
        if r.composer is not None:
            seen[r.composer] = seen.get(r.composer, 0) + 1
            if seen[r.composer] > cap:
                continue
        out.append(r)
    return out


# ---------------------------------------------------------------------- fetching


def fetch_package(name: str, *, cache_dir: Path = CACHE_DIR) -> Path:
    """Download (``apt-get download``, once) and extract (``dpkg-deb -x``, once) a package.

    Returns
    -------
    Path
        The extraction folder, ``<cache_dir>/x/<name>``.

    Raises
    ------
    ValueError
        For a package in :data:`FORBIDDEN`.
    RuntimeError
        When apt cannot download it.
    """
    if name in FORBIDDEN:
        raise ValueError(f"{name} is reserved for independent evaluation and must not be used")
    debs = cache_dir / "debs"
    root = cache_dir / "x" / name
    if (root / ".extracted").exists():
        return root
    debs.mkdir(parents=True, exist_ok=True)
    found = sorted(debs.glob(f"{name}_*.deb"))
    if not found:
        proc = subprocess.run(["apt-get", "download", name], cwd=debs, capture_output=True, text=True)
        found = sorted(debs.glob(f"{name}_*.deb"))
        if not found:
            raise RuntimeError(f"apt-get download {name} failed: {proc.stderr.strip()[-400:]}")
    root.mkdir(parents=True, exist_ok=True)
    subprocess.run(["dpkg-deb", "-x", str(found[-1]), str(root)], check=True)
    (root / ".extracted").write_text(found[-1].name)
    return root


def _doc(root: Path, package: str, name: str) -> str:
    for path in (root / "usr/share/doc" / package / name, root / "usr/share/doc" / package / f"{name}.gz"):
        if path.exists():
            data = path.read_bytes()
            return (gzip.decompress(data) if path.suffix == ".gz" else data).decode("utf-8", "replace")
    return ""


def _audio_files(root: Path, pattern: str) -> list[Path]:
    return sorted(Path(p) for p in glob.glob(str(root / pattern), recursive=True) if Path(p).suffix.lower() in AUDIO_SUFFIXES)


def _read(path: Path) -> tuple[Mapping | None, float]:
    import mutagen

    f = mutagen.File(str(path))
    return (f.tags if f is not None else None), (float(f.info.length) if f is not None else 0.0)


#: ``package -> (glob of the music files under the extraction folder, album)``.
SOURCES: dict[str, tuple[str, str]] = {
    "supertux-data": ("usr/share/games/supertux2/music/**/*", "SuperTux"),
    "singularity-music": ("usr/share/games/singularity/music/**/*", "Endgame: Singularity"),
    "hyperrogue-music": ("usr/share/hyperrogue/music/*", "HyperRogue"),
    "pushover-data": ("usr/share/pushover/themes/*", "Pushover"),
    "extremetuxracer-data": ("usr/share/games/etr/music/*", "Extreme Tux Racer"),
    "lincity-ng-data": ("usr/share/games/lincity-ng/music/**/*", "LinCity-NG"),
    "frozen-bubble-data": ("usr/share/games/frozen-bubble/snd/*", "Frozen Bubble"),
    "asc-music": ("usr/share/games/asc/music/*", "Advanced Strategic Command"),
}


def package_recordings(package: str, root: Path) -> list[Recording]:
    """The labelled recordings of one extracted package (all lengths; see :func:`load_recordings`)."""
    pattern, album = SOURCES[package]
    copyright_text = _doc(root, package, "copyright")
    fixed: tuple[str | None, str] = (None, "")
    per_file: dict[str, str] = {}
    if package == "pushover-data":
        fixed = (copyright_music_holder(copyright_text), "copyright")
    elif package == "frozen-bubble-data":
        # frozen-bubble-data's copyright names only "The Frozen-Bubble Team"; its music package
        # fb-music-high (the same game's music, 1.5 MB) names the upstream author.
        music_root = fetch_package("fb-music-high", cache_dir=root.parent.parent)
        fixed = (copyright_upstream_author(_doc(music_root, "fb-music-high", "copyright")), "copyright")
    elif package == "asc-music":
        fixed = (copyright_files_star_holder(copyright_text), "copyright")
    elif package == "extremetuxracer-data":
        readme = root / "usr/share/games/etr/music/readme"
        per_file = parse_etr_readme(readme.read_text("utf-8", "replace")) if readme.exists() else {}
    out = []
    for path in _audio_files(root, pattern):
        tags, duration_s = _read(path)
        titles = (tags or {}).get("title") if tags is not None and hasattr(tags, "get") else None
        title = path.stem if isinstance(titles, list) and len(titles) > 1 else (tag_value(tags, "title", "TIT2") or path.stem)
        composer, source = None, ""
        if package == "extremetuxracer-data":
            composer, source = per_file.get(path.name), "readme"
        elif package == "lincity-ng-data":
            parsed = parse_numbered_filename(path.name)
            if parsed:
                (composer, title), source = parsed, "filename"
        elif fixed[0] is not None:
            composer, source = fixed
        if composer is None:
            artist = tag_value(tags, "artist", "TPE1")
            if artist:
                composer, source = normalise_name(artist), "tag"
        if composer is None and package == "hyperrogue-music":
            composer, source = parse_hyperrogue_filename(path.name), "filename"
        rec_album = album
        if package == "singularity-music":
            rec_album = tag_value(tags, "album", "TALB") or album
        out.append(Recording(package, path, title, composer, rec_album, duration_s, source if composer else ""))
    return out


def load_recordings(packages=tuple(SOURCES), *, cache_dir: Path = CACHE_DIR, min_duration_s: float = MIN_DURATION_S,
                    max_per_composer: int = MAX_PER_COMPOSER) -> list[Recording]:
    """Fetch ``packages`` (once) and return their labelled recordings of at least ``min_duration_s``,
    at most ``max_per_composer`` per composer, sorted by package and path."""
    recs: list[Recording] = []
    for package in packages:
        root = fetch_package(package, cache_dir=cache_dir)
        recs += [r for r in package_recordings(package, root) if r.duration_s >= min_duration_s]
    return cap_per_composer(sorted(recs, key=lambda r: (r.package, str(r.path))), max_per_composer)


@contextlib.contextmanager
def untagged_copy(path: Path) -> Iterator[Path]:
    """A temporary copy of ``path`` with every tag removed (mutagen), deleted afterwards.

    Raises
    ------
    RuntimeError
        When a tag survives the removal.
    """
    import mutagen

    with tempfile.TemporaryDirectory(prefix="musicaas-bench-") as tmp:
        copy = Path(tmp) / f"track{path.suffix.lower()}"
        shutil.copyfile(path, copy)
        f = mutagen.File(str(copy))
        if f is not None and f.tags is not None:
            f.delete()
        f = mutagen.File(str(copy))
        if f is not None and f.tags:
            raise RuntimeError(f"tags survived removal in the copy of {path}")
        yield copy
