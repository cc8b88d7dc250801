"""The analyzer's worker pool: several real files at once on worker processes, with the same
results and the same errors as an analysis in the service process, and a pool that survives
bad input and dead workers and shuts down cleanly."""

from __future__ import annotations

import asyncio
import os
import signal
import time

import numpy as np
import pytest

from musicaas.render import encode_wav
from musicaas.runtime.errors import InvalidArgument, MusicaasError, ResourceExhausted, Unavailable
from musicaas_analyzer.analysis import analyze_bytes
from musicaas_analyzer.convert import analysis_to_proto
from musicaas_analyzer.service import Analyzer, AnalyzerSettings

SR = 22050


@pytest.fixture(scope="module")
def wavs(kit):
    """Four rendered chorale excerpts (8-10 s), as WAV files."""
    out = []
    for name, seconds, transpose in (("bach/bwv66.6", 10, 0), ("bach/bwv66.6", 8, 5), ("bach/bwv1.6", 9, 0),
                                     ("bach/bwv1.6", 8, -3)):
        score, _ = kit.chorale_midi(name)
        y = kit.render_variant(score, seconds=seconds, transpose=transpose)
        out.append(encode_wav(y, sample_rate_hz=SR))
    return out


@pytest.fixture(scope="module")
async def analyzer():
    """Two worker processes, started (and warmed up) before the tests."""
    a = Analyzer(AnalyzerSettings(workers=2))
    await a.start()
    yield a
    await a.close()


def _pool_pids(analyzer: Analyzer) -> list[int]:
    return [p.pid for p in (getattr(analyzer._pool, "_processes", None) or {}).values()]


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # a zombie is dead too
    try:
        with open(f"/proc/{pid}/stat") as fh:
            return fh.read().split(")")[-1].split()[0] != "Z"
    except OSError:
        return False


def test_default_workers_is_one_per_core():
    assert AnalyzerSettings().workers == len(os.sched_getaffinity(0))
    assert AnalyzerSettings(workers=0).workers == 0


async def test_several_files_at_once_give_the_in_process_results(analyzer, wavs):
    assert len(_pool_pids(analyzer)) == 2
    results = await asyncio.gather(*(analyzer.analyze(w, f"clip{i}.wav") for i, w in enumerate(wavs)))
    for wav, result in zip(wavs, results):
        expected = analysis_to_proto(analyze_bytes(wav, filename="x.wav"))
        assert result.key == expected.key and result.mode == expected.mode
        assert result.tempo_bpm == pytest.approx(expected.tempo_bpm)
        assert list(result.beats_s) == pytest.approx(list(expected.beats_s))
        assert result.duration_s == pytest.approx(expected.duration_s)
        assert result.loudness_lufs == pytest.approx(expected.loudness_lufs)
        assert np.allclose(result.embedding, expected.embedding, atol=1e-6)
    assert len({r.key + str(r.mode) for r in results}) >= 2  # really different files


async def test_corrupt_file_is_invalid_argument_and_the_pool_keeps_working(analyzer, wavs):
    import io

    import soundfile as sf

    buf = io.BytesIO()
    sf.write(buf, sf.read(io.BytesIO(wavs[0]), dtype="float32")[0], 22050, format="FLAC")
    truncated = buf.getvalue()[:4000]  # a FLAC cut inside its frames (a cut WAV is analysed to its cut)
    with pytest.raises(InvalidArgument, match="truncated"):
        await analyzer.analyze(truncated, "cut.flac")
    with pytest.raises(InvalidArgument, match="text.wav"):
        await analyzer.analyze(b"hello, I am text" * 10, "text.wav")
    # a bad file among good ones: only it fails
    outcomes = await asyncio.gather(
        analyzer.analyze(wavs[1], "a.wav"), analyzer.analyze(truncated, "cut.flac"), analyzer.analyze(wavs[2], "b.wav"),
        return_exceptions=True,
    )
    assert isinstance(outcomes[1], InvalidArgument) and "truncated FLAC" in outcomes[1].message
    assert outcomes[0].duration_s > 7 and outcomes[2].duration_s > 7
    assert len(_pool_pids(analyzer)) == 2


async def test_too_large_audio_is_refused_before_the_pool():
    a = Analyzer(AnalyzerSettings(workers=1, max_audio_bytes=1000))
    try:
        with pytest.raises(ResourceExhausted, match="limit is 1000 bytes"):
            await a.analyze(b"\0" * 2000, "big.wav")
        assert _pool_pids(a) == []  # no worker was started for it
    finally:
        await a.close()


async def test_a_dead_worker_is_replaced(analyzer, wavs):
    before = _pool_pids(analyzer)
    os.kill(before[0], signal.SIGKILL)  # as the OOM killer would
    result = await analyzer.analyze(wavs[3], "after.wav")
    assert result.duration_s > 7
    after = _pool_pids(analyzer)
    assert after and not set(after) & set(before)
    results = await asyncio.gather(*(analyzer.analyze(w, "again.wav") for w in wavs[:2]))
    assert all(r.duration_s > 7 for r in results)


async def test_close_stops_the_workers_and_refuses_new_work(analyzer, wavs):
    # last user of the module's analyzer (tests run in file order)
    pids = _pool_pids(analyzer)
    assert len(pids) == 2 and all(_alive(p) for p in pids)
    slow = asyncio.ensure_future(analyzer.analyze(wavs[0], "in-flight.wav"))
    await asyncio.sleep(0.2)
    await analyzer.close()
    assert (await slow).duration_s > 7  # a running analysis finishes
    deadline = time.monotonic() + 10
    while any(_alive(p) for p in pids) and time.monotonic() < deadline:
        await asyncio.sleep(0.1)
    assert not any(_alive(p) for p in pids)
    with pytest.raises(Unavailable, match="shutting down"):
        await analyzer.analyze(wavs[0], "x.wav")
    await analyzer.close()  # idempotent


async def test_threads_when_workers_is_zero(wavs):
    async with Analyzer(AnalyzerSettings(workers=0, concurrency=2)) as a:
        results = await asyncio.gather(*(a.analyze(w, "t.wav") for w in wavs[:2]))
        assert all(r.duration_s > 7 for r in results)
        with pytest.raises(InvalidArgument):
            await a.analyze(wavs[0][:100], "cut.wav")


def test_domain_errors_cross_the_process_boundary_unchanged():
    import pickle

    from musicaas.runtime import errors

    for cls in (errors.InvalidArgument, errors.NotFound, errors.ResourceExhausted, errors.Unavailable, MusicaasError):
        err = pickle.loads(pickle.dumps(cls("why it failed")))
        assert type(err) is cls and err.message == "why it failed" and err.code == cls.code

