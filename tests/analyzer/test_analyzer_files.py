"""Uploads analysed from a file (the consumer's spool file): ``analyze_file`` gives exactly the
result and the errors of ``analyze_bytes`` on the same bytes, for every container; it decodes
from the file without holding it (peak memory measured in a subprocess); and the
``tracks.uploaded`` consumer streams each blob into a spool file, hands the worker its path,
and removes the file whatever happens."""

from __future__ import annotations

import asyncio
import io
import os
import subprocess
import sys
import uuid

import numpy as np
import pytest
import soundfile as sf

from musicaas.common.v1 import common_pb2
from musicaas.events.v1 import events_pb2
from musicaas.runtime.errors import InvalidArgument, NotFound
from musicaas_analyzer import decode
from musicaas_analyzer.analysis import MAX_MIDI_FILE_BYTES, analyze_bytes, analyze_file
from musicaas_analyzer.convert import analysis_to_proto

SR = 22050
_ANALYZER_SRC = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", "..", "services", "analyzer"))


def encode(y: np.ndarray, sr: int, fmt: str = "WAV", subtype: str | None = None) -> bytes:
    buf = io.BytesIO()
    sf.write(buf, y, sr, format=fmt, subtype=subtype)
    return buf.getvalue()


def id3_tag(size: int) -> bytes:
    """An ID3v2.4 tag of ``size`` bytes of padding (a synchsafe size: 7 bits per byte)."""
    synchsafe = bytes((size >> shift) & 0x7F for shift in (21, 14, 7, 0))
    return b"ID3\x04\x00\x00" + synchsafe + b"\x00" * size


@pytest.fixture(scope="module")
def excerpt(kit) -> np.ndarray:
    """12 s of chorale BWV 66.6 at 22050 Hz, mono."""
    score, _ = kit.chorale_midi("bach/bwv66.6")
    return kit.render_variant(score, seconds=12.0)


@pytest.fixture(scope="module")
def uploads(kit, excerpt) -> dict[str, bytes]:
    """The same music in every container, as a partner would upload it."""
    y44 = decode.resample(excerpt, SR, 44100)
    stereo44 = np.stack([y44, 0.6 * y44], axis=1)
    y48 = decode.resample(excerpt, SR, 48000)
    mp3 = encode(stereo44, 44100, fmt="MP3", subtype="MPEG_LAYER_III")
    flac = encode(y48, 48000, fmt="FLAC", subtype="PCM_24")
    return {
        "wav-stereo-44k": encode(stereo44, 44100, subtype="PCM_16"),
        "wav-mono-22k-float": encode(excerpt, SR, subtype="FLOAT"),
        "flac-48k": flac,
        # a FLAC behind an ID3v2 tag longer than the head the file sniffer reads
        "flac-behind-a-long-id3-tag": id3_tag(decode.SNIFF_HEAD_BYTES + 500_000) + flac,
        "mp3": mp3,
        "mp3-behind-junk": b"\x00" * 700 + b"<html>not found</html>" * 20 + mp3,
        "mp3-with-id3": id3_tag(2000) + mp3,
        "ogg-vorbis": encode(stereo44, 44100, fmt="OGG", subtype="VORBIS"),
        "aiff": encode(stereo44, 44100, fmt="AIFF"),
        "midi": kit.chorale_midi_bytes("bach/bwv66.6"),
    }


def _write(tmp_path, data: bytes, name: str = "upload.bin") -> str:
    path = tmp_path / name
    path.write_bytes(data)
    return str(path)


def _wire(analysis) -> bytes:
    """Every field of an analysis, serialized: equal bytes mean identical results."""
    return analysis_to_proto(analysis).SerializeToString()


@pytest.mark.parametrize(
    "name",
    ["wav-stereo-44k", "wav-mono-22k-float", "flac-48k", "flac-behind-a-long-id3-tag", "mp3", "mp3-behind-junk",
     "mp3-with-id3", "ogg-vorbis", "aiff", "midi"],
)
def test_analyze_file_is_analyze_bytes_of_the_same_file(uploads, tmp_path, name):
    data = uploads[name]
    path = _write(tmp_path, data)
    with open(path, "rb") as file:
        assert decode.sniff_file(file) == decode.sniff_container(data)
    from_bytes = analyze_bytes(data, filename=name)
    from_file = analyze_file(path, filename=name)
    assert not from_file.is_silent and from_file.duration_s > 11
    assert _wire(from_file) == _wire(from_bytes)
    np.testing.assert_array_equal(from_file.embedding, from_bytes.embedding)


def test_the_long_id3_tag_case_is_really_flac_from_its_offset(uploads, tmp_path):
    data = uploads["flac-behind-a-long-id3-tag"]
    with open(_write(tmp_path, data), "rb") as file:
        container, offset = decode.sniff_file(file)
    assert container == "flac" and offset == len(data) - len(uploads["flac-48k"])
    # and the head alone would have called it MP3: the sniffer looked past it
    assert decode.sniff_container(data[: decode.SNIFF_HEAD_BYTES])[0] == "mp3"


def test_detail_false_and_the_decoded_mix_match_too(uploads, tmp_path):
    data = uploads["wav-stereo-44k"]
    path = _write(tmp_path, data)
    assert _wire(analyze_file(path, detail=False)) == _wire(analyze_bytes(data, detail=False))
    blocks_file, blocks_bytes = [], []
    mix_file = decode.decode_mono_streaming_file(path, on_block=lambda b, r: blocks_file.append(b.copy()), target_rate_hz=SR)
    mix_bytes = decode.decode_mono_streaming(data, on_block=lambda b, r: blocks_bytes.append(b.copy()), target_rate_hz=SR)
    np.testing.assert_array_equal(mix_file[0], mix_bytes[0])
    assert mix_file[1:] == mix_bytes[1:] and mix_file[1] == 44100 and mix_file[3] == "wav"
    assert len(blocks_file) == len(blocks_bytes)
    for a, b in zip(blocks_file, blocks_bytes):
        np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize(
    "make",
    [
        lambda y: b"",
        lambda y: encode(y, SR, fmt="FLAC")[:4000],
        lambda y: b"fLaC" + bytes(np.random.default_rng(5).integers(0, 256, 5000, dtype=np.uint8)),
        lambda y: encode(y[:1], SR),
        lambda y: encode(np.stack([y[:8000]] * 33, axis=1), SR),
        lambda y: encode(y, SR, fmt="AU"),
        lambda y: b"just some text, not audio\n" * 40,
        lambda y: encode(np.where(np.arange(y.size) == 5000, np.inf, y).astype(np.float32), SR, subtype="FLOAT"),
        lambda y: b"MThd\x00\x00\x00\x06\x00\x01\x00\x01\x01\xe0",
    ],
    ids=["empty", "truncated-flac", "corrupt-flac", "single-sample", "33-channels", "sun-au",
         "text", "inf", "truncated-midi"],
)
def test_bad_files_are_refused_with_the_message_of_analyze_bytes(excerpt, tmp_path, make):
    data = make(excerpt)
    with pytest.raises(InvalidArgument) as from_bytes:
        analyze_bytes(data, filename="upload.wav")
    with pytest.raises(InvalidArgument) as from_file:
        analyze_file(_write(tmp_path, data), filename="upload.wav")
    assert from_file.value.message == from_bytes.value.message


def test_too_long_is_refused_from_the_header(excerpt, tmp_path):
    path = _write(tmp_path, encode(excerpt, SR))
    with pytest.raises(InvalidArgument, match=r"audio too long \(named 'x.wav'\): 12\.\d s exceeds the limit of 10 s"):
        analyze_file(path, filename="x.wav", max_duration_s=10)


def test_a_huge_file_that_starts_like_midi_is_not_read_whole(tmp_path):
    path = tmp_path / "big.mid"
    with open(path, "wb") as fh:  # sparse: takes no disk space
        fh.write(b"MThd\x00\x00\x00\x06\x00\x01\x00\x01\x01\xe0")
        fh.truncate(MAX_MIDI_FILE_BYTES + 1)
    with pytest.raises(InvalidArgument, match=r"MIDI file too large \(named 'big.mid'\): 67108865 bytes"):
        analyze_file(path, filename="big.mid")


# --- memory ----------------------------------------------------------------------------------

#: Analyses a long WAV in a fresh process, from the file (``file``) or from its bytes read
#: whole (``bytes``, the consumer's old path); prints the growth of the peak RSS over the RSS
#: before the analysis (VmHWM after minus VmRSS before: never less than the real growth).
MEMORY_CHILD = r"""
import os, resource, sys
for var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "NUMBA_NUM_THREADS"):
    os.environ[var] = "1"
mode, path, src = sys.argv[1:4]
sys.path.insert(0, src)
from musicaas_analyzer.analysis import analyze_bytes, analyze_file, warm_up
warm_up()
def rss(field="VmRSS"):
    for line in open("/proc/self/status"):
        if line.startswith(field + ":"):
            return int(line.split()[1]) * 1024
from musicaas_analyzer import decode
before = rss()
if mode == "file":
    result = analyze_file(path, max_duration_s=3600)
elif mode == "bytes":
    with open(path, "rb") as fh:
        data = fh.read()
    result = analyze_bytes(data, max_duration_s=3600)
elif mode == "decode-file":
    mix, rate = decode.decode_mono_streaming_file(path, max_duration_s=3600, target_rate_hz=22050)[:2]
else:
    with open(path, "rb") as fh:
        data = fh.read()
    mix, rate = decode.decode_mono_streaming(data, max_duration_s=3600, target_rate_hz=22050)[:2]
# VmHWM, not ru_maxrss: Linux keeps ru_maxrss across execve, so a child of a large pytest
# process would start with the parent's peak
peak = rss("VmHWM")
if mode.startswith("decode"):
    print(peak - before, len(mix) / 22050, 0)
else:
    print(peak - before, result.duration_s, len(result.beats))
"""


def _write_long_wav(path, minutes: float, sr: int = 44100) -> None:
    """A 44.1 kHz stereo 16-bit WAV of harmonic tones and clicks, written block by block."""
    rng = np.random.default_rng(0)
    n = int(minutes * 60 * sr)
    block = 10 * sr
    t = np.arange(block) / sr
    with sf.SoundFile(path, "w", samplerate=sr, channels=2, format="WAV", subtype="PCM_16") as f:
        for start in range(0, n, block):
            k = min(block, n - start)
            f0 = 110.0 * 2 ** (int(rng.integers(0, 24)) / 12)
            tone = sum(np.sin(2 * np.pi * h * f0 * t[:k]) / h for h in range(1, 6))
            clicks = (np.sin(2 * np.pi * 2.0 * t[:k]) > 0.995).astype(float)
            x = 0.2 * tone + 0.3 * clicks + 0.01 * rng.standard_normal(k)
            f.write(np.stack([x, 0.8 * x], axis=1) * 0.8)


def _peak_growth(mode: str, path) -> tuple[int, float, int]:
    out = subprocess.run([sys.executable, "-c", MEMORY_CHILD, mode, str(path), _ANALYZER_SRC],
                         capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stderr[-3000:]
    growth, duration_s, beats = out.stdout.split()[-3:]
    return int(growth), float(duration_s), int(beats)


def test_a_long_wav_is_decoded_from_the_file_without_holding_it(tmp_path):
    """20 minutes of 44.1 kHz stereo 16-bit WAV (202 MiB), decoded in a fresh process.

    Decoding from the file holds only the 22050 Hz mono mix (101 MiB); decoding from the
    bytes (the consumer's old path) holds the file as well. Measured on the 2-core dev box,
    peak growth: 104 MiB from the file, about 305 MiB from the bytes. The whole analysis adds
    its own working memory on top (333 MiB in all for the file path, 535 MiB for the bytes
    path, measured from a small parent process); it varies with the machine's allocator and
    threads, so it is only run to completion here."""
    minutes = 20.0
    path = tmp_path / "long.wav"
    _write_long_wav(path, minutes)
    file_bytes = path.stat().st_size
    mix_bytes = int(minutes * 60 * SR) * 4  # float32
    from_file, duration_s, _ = _peak_growth("decode-file", path)
    assert duration_s == pytest.approx(minutes * 60)
    from_bytes, _, _ = _peak_growth("decode-bytes", path)
    assert from_file < mix_bytes + 64 * 2**20, (from_file / 2**20, mix_bytes / 2**20)
    assert from_bytes > mix_bytes + 0.9 * file_bytes, (from_bytes / 2**20, file_bytes / 2**20)
    _, duration_s, beats = _peak_growth("file", path)
    assert duration_s == pytest.approx(minutes * 60) and beats > 1000  # a real analysis of the whole file


# --- the tracks.uploaded consumer ---------------------------------------------------------------


@pytest.fixture(scope="module")
async def process_analyzer():
    """One worker process, as the service runs them."""
    from musicaas_analyzer.service import Analyzer, AnalyzerSettings

    analyzer = Analyzer(AnalyzerSettings(workers=1))
    await analyzer.start()
    yield analyzer
    await analyzer.close()


@pytest.fixture
async def consumer(nats_url, process_analyzer, tmp_path):
    """An UploadConsumer on the real nats-server with a spool folder of its own; records the
    arguments each analysis was submitted to the worker pool with."""
    from musicaas.runtime.bus import Bus
    from musicaas_analyzer.service import Analyzer, UploadConsumer

    submitted: list[tuple] = []

    async def recording_submit(pool, fn, *args):
        submitted.append(args)
        return await Analyzer._submit(pool, fn, *args)

    process_analyzer._submit = recording_submit
    async with Bus(nats_url, name="test-analyzer-consumer") as bus:
        c = UploadConsumer(bus, process_analyzer, spool_dir=tmp_path / "spool")
        c.submitted = submitted
        yield c
    del process_analyzer._submit


#: The tenant of this module's uploads (events carry their tenant; the consumer writes its tracks).
TENANT = f"an{uuid.uuid4().hex[:12]}"


async def _upload(bus, data: bytes, filename: str) -> events_pb2.TrackUploaded:
    name = f"{TENANT}/uploads/test-{uuid.uuid4().hex}"
    ref = await bus.put_blob(name, data, content_type="audio/wav")
    return events_pb2.TrackUploaded(track_id=f"trk_test{uuid.uuid4().hex[:16]}", tenant=TENANT, audio_blob=ref,
                                    filename=filename, source=common_pb2.TRACK_SOURCE_UPLOAD, title=filename)


def _spooled(consumer) -> list[str]:
    return sorted(os.listdir(consumer.spool_dir)) if consumer.spool_dir.exists() else []



@pytest.mark.integration
async def test_consumer_analyses_from_a_spool_file_and_removes_it(consumer, uploads):
    data = uploads["wav-stereo-44k"]
    event = await _upload(consumer.bus, data, "song.wav")
    await consumer.handle(event, {})
    track = await consumer.bus.get_track(TENANT, event.track_id)
    assert track.state == common_pb2.TRACK_STATE_ANALYZED
    assert track.analysis.SerializeToString() == analysis_to_proto(analyze_bytes(data, filename="song.wav")).SerializeToString()
    # the worker got a path in the spool folder and the name for messages, never the bytes
    (args,) = consumer.submitted
    assert isinstance(args[0], str) and os.path.dirname(args[0]) == str(consumer.spool_dir)
    assert args[1] == "song.wav"
    assert not any(isinstance(a, (bytes, bytearray, memoryview)) for a in args)
    assert _spooled(consumer) == []


@pytest.mark.integration
async def test_consumer_removes_the_spool_file_of_a_corrupt_upload(consumer, uploads):
    # a FLAC cut inside its frames is corrupt (a cut WAV is analysed to where it was cut)
    data = encode(np.sin(np.linspace(0, 2000, 4 * SR)).astype(np.float32), SR, fmt="FLAC")
    event = await _upload(consumer.bus, data[:4000], "cut.flac")
    with pytest.raises(InvalidArgument, match=r"(corrupt|truncated).*FLAC data \(named 'cut.flac'\)"):
        await consumer.handle(event, {})
    assert _spooled(consumer) == []


@pytest.mark.integration
async def test_consumer_without_the_blob_leaves_no_spool_file(consumer):
    event = events_pb2.TrackUploaded(track_id="trk_testmissing", tenant=TENANT, filename="gone.wav",
                                     audio_blob=common_pb2.BlobRef(name=f"{TENANT}/uploads/missing-{uuid.uuid4().hex}"))
    with pytest.raises(NotFound):
        await consumer.handle(event, {})
    assert _spooled(consumer) == []


@pytest.mark.integration
async def test_a_cancelled_analysis_leaves_no_spool_file(consumer, uploads):
    event = await _upload(consumer.bus, uploads["wav-stereo-44k"], "slow.wav")
    started = asyncio.Event()
    seen: list[list[str]] = []
    real = consumer.analyzer.analyze_file

    async def analyze_file_then_signal(path, filename):
        seen.append(_spooled(consumer))
        started.set()
        return await real(path, filename)

    consumer.analyzer.analyze_file = analyze_file_then_signal
    try:
        task = asyncio.ensure_future(consumer.handle(event, {}))
        await asyncio.wait_for(started.wait(), 30)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
    finally:
        del consumer.analyzer.analyze_file
    assert len(seen[0]) == 1 and seen[0][0].startswith("upload-")  # the spool file existed during the analysis
    assert _spooled(consumer) == []
    track = await consumer.bus.get_track(TENANT, event.track_id)
    assert track is None or track.state != common_pb2.TRACK_STATE_ANALYZED
