"""Decode uploaded audio, held in memory or in a file, into validated, analysable samples.

The container is identified from the bytes themselves by :mod:`musicaas.media`, the one
owner of container sniffing, so that the analyzer accepts exactly what the gateway
accepts: a FLAC file named ``song.wav`` decodes as FLAC, and a text file named
``song.wav`` is rejected with a message that says what the bytes look like. Decoding is done by libsndfile (through
``soundfile``), whose bundled build (libsndfile 1.2) reads WAV (RIFF/RIFX/RF64, and Sony
Wave64, which is sniffed and reported as ``"wav"``), FLAC, Ogg (Vorbis, Opus), MP3
(through mpg123) and AIFF/AIFC, in every sample format it knows (8/16/24/32-bit integer,
32/64-bit float, A-law, u-law, ADPCM), at any rate in [:data:`MIN_SAMPLE_RATE_HZ`,
:data:`MAX_SAMPLE_RATE_HZ`]. Standard MIDI Files are sniffed here too but read by
:mod:`musicaas_analyzer.midi`, not decoded.

Files of up to :data:`MAX_CHANNELS` channels are read: the mono mix is the mean of a stereo
file's two channels, and the ITU-R BS.775 downmix of more (:mod:`musicaas_analyzer.downmix`
has the gains and the channel orders; a WAV file's WAVE_FORMAT_EXTENSIBLE channel mask
says where each channel plays, :mod:`musicaas_analyzer.wavheader` reads it).

A RIFF WAV file whose ``data`` chunk size lies (more than the file holds, less than it
holds, 0 or 0xFFFFFFFF as streaming writers leave it) is read to its real end:
:mod:`musicaas_analyzer.wavheader` finds it, and libsndfile reads the file through a view
whose header says it (:class:`_Patched`).

Every problem with the input raises :class:`~musicaas.runtime.errors.InvalidArgument`
with a message naming the problem: empty data, an unsupported or unrecognised container,
corrupt or truncated data (a FLAC, Ogg or MP3 stream that ends before its header says),
non-finite samples, more than :data:`MAX_CHANNELS` channels, audio longer than the
caller's limit, or audio too short to analyse (:data:`MIN_DURATION_S`).

An upload in a file (the analyzer spools large uploads to disk) is decoded from the file
itself, block by block (:func:`decode_mono_streaming_file`): the container is sniffed from its
first :data:`SNIFF_HEAD_BYTES` (:func:`sniff_file`), and libsndfile reads it through a window
that starts where the container starts, so that the encoded file is never held in memory
and the samples are exactly those decoded from the same bytes in memory.

Resampling uses ``librosa.resample`` with the ``soxr_hq`` resampler.
"""

from __future__ import annotations

import io
import math
import os
from dataclasses import dataclass

import numpy as np

from musicaas import media
from musicaas.runtime.errors import InvalidArgument
from musicaas_analyzer import downmix, wavheader
from musicaas_analyzer.downmix import MAX_CHANNELS

#: Containers this module decodes, as lower-case names (the audio rows of :data:`musicaas.media.CONTAINERS`).
SUPPORTED_FORMATS = tuple(c.name for c in media.ACCEPTED if c.reader == "audio")

#: Shortest audio accepted, seconds. Beat tracking and key finding need a few frames.
MIN_DURATION_S = 0.5

#: Accepted range of sample rates, Hz, both for files and for the requested output rate.
MIN_SAMPLE_RATE_HZ = 4000
MAX_SAMPLE_RATE_HZ = 384000

#: Bytes read from the start of a file to sniff its container (:func:`sniff_file`); more than
#: the MPEG search of :mod:`musicaas.media` needs.
SNIFF_HEAD_BYTES = 1 << 20

_BLOCK_FRAMES = 1 << 18


@dataclass(frozen=True)
class DecodedAudio:
    """Audio as stored in the file, before downmixing and resampling.

    Attributes
    ----------
    samples : np.ndarray [shape=(n, channels)], float32
        The decoded samples, finite, at the file's own rate.
    sample_rate_hz : int
        The file's sample rate.
    container : str
        One of :data:`SUPPORTED_FORMATS`, as sniffed from the bytes.
    channel_positions : tuple of str
        Where each channel plays (:func:`musicaas_analyzer.downmix.channel_positions`);
        empty: the default order of ``container`` for the number of channels.
    """

    samples: np.ndarray
    sample_rate_hz: int
    container: str
    channel_positions: tuple[str, ...] = ()

    @property
    def channels(self) -> int:
        return int(self.samples.shape[1])

    @property
    def duration_s(self) -> float:
        return self.samples.shape[0] / self.sample_rate_hz

    def mono(self) -> np.ndarray:
        """The mono mix, float32 [shape=(n,)]: the channel itself, the mean of a stereo
        pair, the BS.775 downmix of more (:mod:`musicaas_analyzer.downmix`)."""
        positions = self.channel_positions or downmix.channel_positions(self.channels, container=self.container)
        out = np.empty(self.samples.shape[0], dtype=np.float32)
        _mix(self.samples, downmix.mono_gains(positions), out)
        return out


def _mix(block: np.ndarray, gains: np.ndarray, out: np.ndarray) -> None:
    """Write the mono mix of ``block`` (n, channels) with ``gains`` (channels,) into ``out`` (n,)."""
    if gains.size == 1:
        out[:] = block[:, 0]
    elif gains.size == 2:  # the mean of a stereo pair, computed as it always was
        np.add(block[:, 0], block[:, 1], out=out)
        out *= np.float32(0.5)
    else:
        np.matmul(block, gains, out=out)


def _describe(name: str | None) -> str:
    return f" (named {name!r})" if name else ""


def sniff_container(data: bytes, *, filename: str | None = None) -> tuple[str, int]:
    """Identify the container of an upload, as the gateway does (:func:`musicaas.media.sniff`).

    Parameters
    ----------
    data : bytes
        The whole upload.
    filename : str or None
        Only used to word the error message.

    Returns
    -------
    container : str
        One of :data:`SUPPORTED_FORMATS` (decoded here), or ``"midi"`` (read by
        :mod:`musicaas_analyzer.midi`).
    offset : int
        Where the container starts: after a leading ID3v2 tag for FLAC, at the first MPEG
        audio frame for MP3 behind leading junk, else 0.

    Raises
    ------
    InvalidArgument
        When the data is empty, a known but unsupported container, or not recognised at
        all (:func:`musicaas.media.refusal` says which).
    """
    found = media.sniff(data)
    if found is None or not found.container.accepted:
        raise InvalidArgument(media.refusal(data, filename=filename))
    return found.container.name, found.offset


def sniff_file(file, *, filename: str | None = None) -> tuple[str, int]:
    """Identify the container of an upload held in a file, from its first :data:`SNIFF_HEAD_BYTES`.

    Takes the decision :func:`sniff_container` takes on the whole file: the head holds
    everything :func:`musicaas.media.sniff` looks at, except the start of a FLAC stream
    behind an ID3v2 tag longer than the head, which is read where the tag ends.

    Parameters
    ----------
    file : binary file object, readable and seekable
        The upload; its position is left anywhere.
    filename : str or None
        Only used to word the error message.

    Returns
    -------
    container, offset
        As :func:`sniff_container`.

    Raises
    ------
    InvalidArgument
        As :func:`sniff_container`.
    """
    file.seek(0)
    head = file.read(SNIFF_HEAD_BYTES)
    container, offset = sniff_container(head, filename=filename)
    if container == "mp3" and len(head) == SNIFF_HEAD_BYTES:
        tag = media._id3v2_length(head)  # noqa: SLF001 - the one owner of the ID3v2 header
        if tag and tag + 4 > len(head):
            file.seek(tag)
            if file.read(4) == b"fLaC":
                return "flac", tag
    return container, offset


def _check_rate(sample_rate_hz: int, what: str) -> None:
    if not MIN_SAMPLE_RATE_HZ <= sample_rate_hz <= MAX_SAMPLE_RATE_HZ:
        raise InvalidArgument(
            f"{what} {sample_rate_hz} Hz is out of range [{MIN_SAMPLE_RATE_HZ}, "
            f"{MAX_SAMPLE_RATE_HZ}] Hz"
        )


def check_max_duration(max_duration_s: float) -> None:
    """Raise InvalidArgument unless ``max_duration_s`` is a finite number of seconds > 0."""
    if not (isinstance(max_duration_s, (int, float)) and math.isfinite(max_duration_s)) or max_duration_s <= 0:
        raise InvalidArgument(f"max_duration_s must be a positive number of seconds, got {max_duration_s!r}")


def _libsndfile_message(exc: Exception) -> str:
    text = getattr(exc, "error_string", None) or str(exc)
    return text.strip().rstrip(".")


class _FileFrom:
    """A read-only binary file that starts ``offset`` bytes into ``file``: what libsndfile's
    virtual I/O sees of an upload whose container starts after leading bytes (an MP3 behind
    junk, a FLAC behind an ID3v2 tag), as ``io.BytesIO(data[offset:])`` shows it in memory."""

    mode = "rb"

    def __init__(self, file, offset: int) -> None:
        self._file = file
        self._offset = offset
        file.seek(offset)

    def seek(self, pos: int, whence: int = os.SEEK_SET) -> int:
        if whence == os.SEEK_SET:
            if pos < 0:
                raise ValueError(f"negative seek position {pos}")
            pos += self._offset
        return self._file.seek(pos, whence) - self._offset

    def tell(self) -> int:
        return self._file.tell() - self._offset

    def readinto(self, buffer) -> int:
        return self._file.readinto(buffer)

    def read(self, n: int = -1) -> bytes:
        return self._file.read(n)


class _Patched:
    """A read-only binary file that shows ``patches`` ((offset, bytes) pairs) in place of
    the bytes of ``file`` there: how libsndfile is shown a WAV header whose sizes are
    corrected (:attr:`musicaas_analyzer.wavheader.WaveHeader.patches`), the samples being
    read from the file itself."""

    mode = "rb"

    def __init__(self, file, patches: tuple[tuple[int, bytes], ...]) -> None:
        self._file = file
        self._patches = patches

    def seek(self, pos: int, whence: int = os.SEEK_SET) -> int:
        return self._file.seek(pos, whence)

    def tell(self) -> int:
        return self._file.tell()

    def _overlay(self, view, start: int) -> None:
        for at, patch in self._patches:
            lo, hi = max(at, start), min(at + len(patch), start + len(view))
            if lo < hi:
                view[lo - start : hi - start] = patch[lo - at : hi - at]

    def readinto(self, buffer) -> int:
        start = self._file.tell()
        n = self._file.readinto(buffer)
        if n:
            self._overlay(memoryview(buffer).cast("B")[:n], start)
        return n

    def read(self, n: int = -1) -> bytes:
        start = self._file.tell()
        data = bytearray(self._file.read(n))
        self._overlay(data, start)
        return bytes(data)


def _open(data: bytes, filename: str | None, max_duration_s: float):
    """Validate the arguments, sniff the container of ``data`` and open it with libsndfile.

    Returns (handle, container, label, rate, channels, frames, positions), ``positions``
    where each channel plays (:func:`musicaas_analyzer.downmix.channel_positions`); the
    header is checked (channels, sample rate, duration) before any sample is read."""
    if not isinstance(data, (bytes, bytearray, memoryview)):
        raise TypeError(f"data must be bytes, not {type(data).__name__}")
    check_max_duration(max_duration_s)
    data = bytes(data) if not isinstance(data, bytes) else data
    container, offset = sniff_container(data, filename=filename)
    return _open_container(
        lambda: io.BytesIO(data[offset:] if offset else data), container, filename, max_duration_s,
        read_at=lambda pos, n: data[pos : pos + n], size=len(data),
    )


def _open_file(file, filename: str | None, max_duration_s: float):
    """As :func:`_open`, for an upload in an open binary file (read in place, never whole)."""
    check_max_duration(max_duration_s)
    container, offset = sniff_file(file, filename=filename)
    size = os.fstat(file.fileno()).st_size

    def read_at(pos: int, n: int) -> bytes:
        file.seek(pos)
        return file.read(n)

    return _open_container(lambda: _FileFrom(file, offset), container, filename, max_duration_s,
                           read_at=read_at, size=size)


def _open_container(source, container: str, filename: str | None, max_duration_s: float, *, read_at, size: int):
    """Open the sniffed ``container`` with libsndfile: ``source()`` gives the file object it
    reads (starting where the container starts), ``read_at`` and ``size`` the upload's bytes
    for the checks libsndfile does not do."""
    import soundfile as sf

    if container not in SUPPORTED_FORMATS:
        raise InvalidArgument(
            f"unsupported container{_describe(filename)}: the data is "
            f"{media.by_name(container).description}, which is analysed from its notes "
            "(musicaas_analyzer.midi), not decoded as audio"
        )
    label = container.upper()
    header = wavheader.read_wave_header(read_at, size) if container == "wav" else None
    mask = header.channel_mask if header is not None else None
    patches = header.patches if header is not None else ()
    try:
        file = source()
        handle = sf.SoundFile(_Patched(file, patches) if patches else file, mode="r")
    except Exception as exc:  # LibsndfileError, RuntimeError, ValueError from the parser
        raise InvalidArgument(
            f"corrupt {label} data{_describe(filename)}: {_libsndfile_message(exc)}"
        ) from exc
    rate, channels, frames = int(handle.samplerate), int(handle.channels), int(handle.frames)
    try:
        if channels > MAX_CHANNELS:
            raise InvalidArgument(
                f"{channels} audio channels{_describe(filename)}: at most {MAX_CHANNELS} are supported"
            )
        _check_rate(rate, f"{label} sample rate")
        if frames / rate > max_duration_s:
            raise InvalidArgument(
                f"audio too long{_describe(filename)}: {frames / rate:.1f} s exceeds the limit "
                f"of {max_duration_s:g} s"
            )
    except InvalidArgument:
        handle.close()
        raise
    positions = downmix.channel_positions(channels, container=container, channel_mask=mask)
    return handle, container, label, rate, channels, frames, positions


def _read_blocks(handle, label: str, filename: str | None, rate: int, frames: int, buffer_for, consume) -> int:
    """Read up to ``frames`` frames block by block: ``buffer_for(read, n)`` gives the
    (n, channels) float32 array to read into, ``consume(block, read)`` sees each block after
    its samples were checked to be finite. Returns the number of frames read."""
    read = 0
    try:
        while read < frames:
            want = min(_BLOCK_FRAMES, frames - read)
            count = handle.read(want, dtype="float32", always_2d=True, out=buffer_for(read, want))
            n = count.shape[0]
            if n == 0:
                break
            block = count[:n]
            finite = np.isfinite(block)
            if not finite.all():
                bad = int(np.argmin(finite.all(axis=1)))
                raise InvalidArgument(
                    f"{label} data{_describe(filename)} holds non-finite samples (NaN or "
                    f"infinity), the first at {(read + bad) / rate:.3f} s"
                )
            consume(block, read)
            read += n
    except InvalidArgument:
        raise
    except Exception as exc:
        raise InvalidArgument(
            f"corrupt or truncated {label} data{_describe(filename)}: "
            f"{_libsndfile_message(exc)} after {read / rate:.2f} s"
        ) from exc
    return read


def _check_read(read: int, frames: int, rate: int, label: str, filename: str | None) -> None:
    if read == 0:
        raise InvalidArgument(
            f"{label} data{_describe(filename)} holds no audio frames (empty or truncated stream)"
        )
    missing = frames - read
    if missing > max(0.01 * frames, 0.05 * rate):
        raise InvalidArgument(
            f"truncated {label} data{_describe(filename)}: the header declares {frames / rate:.2f} s "
            f"of audio but only {read / rate:.2f} s could be decoded"
        )
    if read / rate < MIN_DURATION_S:
        raise InvalidArgument(
            f"audio too short to analyse{_describe(filename)}: {read / rate:.3f} s ({read} "
            f"sample{'s' if read != 1 else ''} at {rate} Hz); at least {MIN_DURATION_S:g} s "
            "is needed"
        )


def decode_native(
    data: bytes, *, filename: str | None = None, max_duration_s: float = 1800.0
) -> DecodedAudio:
    """Decode and validate audio bytes, keeping the file's channels and sample rate.

    Parameters
    ----------
    data : bytes
        A whole WAV, FLAC, Ogg, MP3 or AIFF file.
    filename : str or None
        The uploaded file's name; used only in error messages (the container is sniffed).
    max_duration_s : float > 0, seconds
        Longer audio is rejected, before most of it is decoded where the header says how
        long it is.

    Returns
    -------
    DecodedAudio
        Finite float32 samples, shape (n, channels), at the file's sample rate.

    Raises
    ------
    InvalidArgument
        Empty, unrecognised, unsupported, corrupt or truncated data; NaN or infinite
        samples; more than :data:`MAX_CHANNELS` channels; a sample rate outside
        [:data:`MIN_SAMPLE_RATE_HZ`, :data:`MAX_SAMPLE_RATE_HZ`]; audio longer than
        ``max_duration_s`` or shorter than :data:`MIN_DURATION_S`.
    """
    handle, container, label, rate, channels, frames, positions = _open(data, filename, max_duration_s)
    with handle:
        # Preallocated from the header's frame count (libsndfile reads no further than it),
        # so that a long file is not held twice while blocks are joined.
        samples = np.empty((frames, channels), dtype=np.float32)
        read = _read_blocks(
            handle, label, filename, rate, frames,
            buffer_for=lambda start, n: samples[start : start + n],
            consume=lambda block, start: None,
        )
    _check_read(read, frames, rate, label, filename)
    return DecodedAudio(samples=samples[:read], sample_rate_hz=rate, container=container, channel_positions=positions)


def decode_mono_streaming(
    data: bytes,
    *,
    filename: str | None = None,
    max_duration_s: float = 1800.0,
    on_block=None,
    target_rate_hz: int | None = None,
) -> tuple[np.ndarray, int, int, str]:
    """Decode to the mono mix, optionally resampled, without holding all channels at once.

    Like :func:`decode_native` (same checks, same errors), but the samples are read a block
    of 2^18 frames at a time into one reusable buffer; ``on_block(block, sample_rate_hz)``
    (block: shape (n, channels), float32, finite) sees every block in order before it is
    mixed down, so that a measurement on the file's own channels (loudness) needs no copy
    of them. With ``target_rate_hz`` the mix is resampled as it is decoded (a soxr stream
    at the ``soxr_hq`` quality :func:`resample` uses: the same samples, the length fixed to
    ``ceil(n * target / rate)`` as ``librosa.resample`` does), so that the mix is never held
    at the file's rate either. For a 30-minute 44.1 kHz stereo file that is 160 MB of
    samples instead of 950 MB; the decoding block of a file of many channels is 1 MiB a
    channel (32 MiB for 32), whatever its length and rate.

    Returns
    -------
    mono : np.ndarray [shape=(m,)], float32
        The mono mix (as :meth:`DecodedAudio.mono`), at ``target_rate_hz`` when given,
        else at the file's rate.
    sample_rate_hz : int
        The file's rate.
    frames : int
        Frames decoded, at the file's rate.
    container : str
    """
    return _mono_streaming(_open(data, filename, max_duration_s), filename, on_block, target_rate_hz)


def decode_mono_streaming_file(
    path,
    *,
    filename: str | None = None,
    max_duration_s: float = 1800.0,
    on_block=None,
    target_rate_hz: int | None = None,
) -> tuple[np.ndarray, int, int, str]:
    """:func:`decode_mono_streaming` of the upload in the file at ``path``, read from the file.

    The container is sniffed from the file's head (:func:`sniff_file`) and libsndfile reads
    the file in place, a block at a time, from where the container starts: the encoded
    file is never held in memory, only the decoding block and the returned mix. The mix
    and the blocks given to ``on_block`` are exactly those of :func:`decode_mono_streaming`
    on the file's bytes, and so are the errors.

    Parameters
    ----------
    path : str or os.PathLike
        A WAV, FLAC, Ogg, MP3 or AIFF file.
    filename : str or None
        The upload's name, used only in error messages (not the path's, which may be a
        spool file's).
    max_duration_s, on_block, target_rate_hz
        As in :func:`decode_mono_streaming`.

    Returns
    -------
    mono, sample_rate_hz, frames, container
        As :func:`decode_mono_streaming`.

    Raises
    ------
    InvalidArgument
        As :func:`decode_mono_streaming`.
    OSError
        When the file cannot be opened or read.
    """
    with open(path, "rb") as file:
        return _mono_streaming(_open_file(file, filename, max_duration_s), filename, on_block, target_rate_hz)


def _mono_streaming(opened, filename: str | None, on_block, target_rate_hz: int | None) -> tuple[np.ndarray, int, int, str]:
    """The body of :func:`decode_mono_streaming` once the input is open (``opened`` from :func:`_open`)."""
    handle, container, label, rate, channels, frames, positions = opened
    gains = downmix.mono_gains(positions)
    if target_rate_hz is not None:
        try:
            _check_rate(int(target_rate_hz), "requested sample rate")
        except InvalidArgument:
            handle.close()
            raise
    resampling = target_rate_hz is not None and int(target_rate_hz) != rate
    ratio = int(target_rate_hz) / rate if resampling else 1.0
    out = np.zeros(int(np.ceil(frames * ratio)) + 64, dtype=np.float32)
    buffer = np.empty((min(_BLOCK_FRAMES, max(frames, 1)), channels), dtype=np.float32)
    mix = np.empty(buffer.shape[0], dtype=np.float32)
    stream = None
    if resampling:
        import soxr

        stream = soxr.ResampleStream(rate, int(target_rate_hz), 1, dtype="float32", quality="HQ")
    written = [0]

    def emit(samples: np.ndarray) -> None:
        k = min(samples.size, out.size - written[0])
        out[written[0] : written[0] + k] = samples[:k]
        written[0] += k

    def consume(block: np.ndarray, start: int) -> None:
        if on_block is not None:
            on_block(block, rate)
        m = mix[: block.shape[0]]
        _mix(block, gains, m)
        emit(stream.resample_chunk(m, last=False) if stream is not None else m)

    with handle:
        read = _read_blocks(handle, label, filename, rate, frames, buffer_for=lambda start, n: buffer[:n], consume=consume)
    _check_read(read, frames, rate, label, filename)
    if stream is not None:
        emit(stream.resample_chunk(np.zeros(0, dtype=np.float32), last=True))
    n_out = int(np.ceil(read * ratio)) if resampling else read
    return out[:n_out], rate, read, container


def resample(y: np.ndarray, orig_sr: int, target_sr: int) -> np.ndarray:
    """Resample mono float audio with soxr (``librosa.resample(res_type='soxr_hq')``).

    Parameters
    ----------
    y : np.ndarray [shape=(n,)], floating point
        Mono samples, full scale 1.0.
    orig_sr, target_sr : int > 0, Hz
        Rate of ``y`` and the rate wanted.

    Returns
    -------
    np.ndarray [shape=(ceil(n * target_sr / orig_sr),)], float32, C-contiguous
        ``y`` itself (as float32) when the rates are equal.
    """
    if orig_sr == target_sr:
        return np.ascontiguousarray(y, dtype=np.float32)
    import librosa

    out = librosa.resample(y, orig_sr=orig_sr, target_sr=target_sr, res_type="soxr_hq")
    return np.ascontiguousarray(out, dtype=np.float32)


def decode_audio(
    data: bytes,
    *,
    filename: str | None = None,
    sample_rate_hz: int = 22050,
    max_duration_s: float = 1800.0,
) -> tuple[np.ndarray, int]:
    """Decode audio bytes into mono float32 at ``sample_rate_hz``.

    Parameters
    ----------
    data : bytes
        A whole WAV, FLAC, Ogg (Vorbis/Opus/FLAC), MP3 or AIFF file. The container is sniffed
        from the bytes.
    filename : str or None
        The uploaded file's name, used only in error messages.
    sample_rate_hz : int in [4000, 384000], Hz
        Output sample rate.
    max_duration_s : float > 0, seconds
        Longer audio is rejected.

    Returns
    -------
    y : np.ndarray [shape=(n,)], float32
        The mono mix (:meth:`DecodedAudio.mono`), resampled to ``sample_rate_hz``.
    sample_rate_hz : int

    Raises
    ------
    InvalidArgument
        See :func:`decode_native`; also for an out-of-range ``sample_rate_hz``.
    """
    if isinstance(sample_rate_hz, bool) or not isinstance(sample_rate_hz, (int, np.integer)):
        raise InvalidArgument(f"sample_rate_hz must be an integer number of Hz, got {sample_rate_hz!r}")
    _check_rate(int(sample_rate_hz), "requested sample rate")
    decoded = decode_native(data, filename=filename, max_duration_s=max_duration_s)
    y = resample(decoded.mono(), decoded.sample_rate_hz, int(sample_rate_hz))
    return y, int(sample_rate_hz)
