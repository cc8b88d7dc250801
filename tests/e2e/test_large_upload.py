"""A 40-minute upload through the whole platform (real nats-server, Qdrant Edge, the four
services as processes on loopback; no model server, which analysis and indexing do not use):
the client streams it from a file, the gateway streams it into the object store, the
analyzer streams it into a spool file and decodes it from there. Neither the gateway nor the
analyzer service process grows with the upload, the spool file is gone afterwards, and the
track is analysed and indexed with its whole duration."""

from __future__ import annotations


import numpy as np
import pytest
import soundfile as sf

from musicaas.common.v1 import common_pb2
from musicaas.runtime.procs import PeakMemory
from musicaas_cli.stack import LocalStack, StackPorts

pytestmark = [pytest.mark.e2e, pytest.mark.integration]

MINUTES = 40
SR = 22050
MB = 10**6


@pytest.fixture(scope="module")
def spool_dir(tmp_path_factory):
    return tmp_path_factory.mktemp("spool")


@pytest.fixture(scope="module")
def stack(tmp_path_factory, spool_dir):
    """A stack of its own (it replaces conftest's ``stack`` here, and conftest's ``client``
    uses it): the analyzer accepts 45 minutes (the default limit is 30) and spools into a
    folder the test can look into; one analysis worker."""
    s = LocalStack(
        tmp_path_factory.mktemp("stack"), ports=StackPorts.free(), model_server=False,
        extra_env={"MUSICAAS_MAX_DURATION_S": "2700", "MUSICAAS_WORKERS": "1", "MUSICAAS_SPOOL_DIR": str(spool_dir)},
    )
    s.start()
    yield s
    codes = s.stop()
    assert all(code == 0 for code in codes.values()), codes


@pytest.fixture(scope="module")
def long_wav(tmp_path_factory):
    """40 minutes of 22050 Hz mono 16-bit WAV (106 MB), written 10 s at a time: harmonic
    tones changing every 10 s, with a click every half second."""
    path = tmp_path_factory.mktemp("audio") / "long.wav"
    rng = np.random.default_rng(11)
    n, block = MINUTES * 60 * SR, 10 * SR
    t = np.arange(block) / SR
    clicks = (np.sin(2 * np.pi * 2.0 * t) > 0.995).astype(float)
    with sf.SoundFile(path, "w", samplerate=SR, channels=1, format="WAV", subtype="PCM_16") as f:
        for start in range(0, n, block):
            f0 = 110.0 * 2 ** (int(rng.integers(0, 24)) / 12)
            tone = sum(np.sin(2 * np.pi * h * f0 * t) / h for h in range(1, 6))
            f.write(0.8 * (0.2 * tone + 0.3 * clicks + 0.01 * rng.standard_normal(block)))
    return path


def test_a_40_minute_upload_streams_end_to_end(stack, client, long_wav, spool_dir):
    size = long_wav.stat().st_size
    assert size > 100 * MB
    gateway, analyzer = stack.procs["gateway"].pid, stack.procs["analyzer"].pid
    with PeakMemory(gateway=gateway, analyzer=analyzer, client="self") as upload:
        with open(long_wav, "rb") as fh:
            resp = client.upload_stream(fh, filename="long.wav", title="forty minutes", timeout_s=300)
        assert resp.size_bytes == size
        track = client.wait_track(resp.track_id, timeout_s=600)
    growth = {name: upload.growth_mib(name) for name in ("gateway", "analyzer", "client")}
    print(f"\nRSS growth during the {size / MB:.0f} MB upload and its analysis, MiB: {growth}")
    assert track.state == common_pb2.TRACK_STATE_INDEXED, track.error
    assert track.analysis.duration_s == pytest.approx(MINUTES * 60, abs=0.5)
    assert track.analysis.tempo_bpm > 0 and not track.analysis.is_silent
    assert len(track.analysis.beats_s) > 2000
    # the gateway streams chunks into the object store: it never holds the upload
    assert growth["gateway"] < 95, growth  # 100 MB
    # the analyzer service streams the blob into its spool file (the worker decodes from it)
    assert growth["analyzer"] < 95, growth  # 100 MB
    # and the client read the file a chunk at a time
    assert growth["client"] < 95, growth  # 100 MB
    assert list(spool_dir.iterdir()) == []  # the spool file was removed after the analysis
