"""``musicaas demo`` against a running (fake) gateway: it uses that gateway instead of starting
the local stack, analyses the user's audio, and reports every track, error and neighbour."""

from __future__ import annotations

import json

from musicaas_cli import main as cli


def test_demo_on_your_audio_reports_every_track(fake_gateway, wavs, analyses, tmp_path, capsys):
    audio = tmp_path / "audio"
    audio.mkdir()
    for i, w in enumerate(wavs[:3]):
        (audio / f"piece{i}.wav").write_bytes(w)
    (audio / "notes.txt").write_text("not audio, and not picked up")
    out = tmp_path / "out"
    state = tmp_path / "state"

    code = cli.main(["demo", "--audio", str(audio), "--out", str(out), "--state-dir", str(state)])
    printed = capsys.readouterr().out
    assert code == 1  # the fake gateway cannot generate
    assert "using the running gateway" in printed and not state.exists()  # no local stack was started

    report = json.loads((out / "report.json").read_text())
    uploads = [r for r in report["tracks"] if r["kind"] == "audio"]
    assert [r["name"] for r in uploads] == ["piece0", "piece1", "piece2"]
    for row, a in zip(uploads, analyses):
        assert row["track_id"].startswith("trk_") and "error" not in row
        assert row["key"] == a.key.tonic and row["mode"] == a.key.mode
        assert set(row["scores"]) == {"tonal_clarity", "rhythmic_stability", "dynamic_range", "repetition"}
    generated = [r for r in report["tracks"] if r["kind"] == "generated"]
    assert [r["requested_key"] for r in generated] == ["D minor", "F major", "A minor", "Eb major"]
    assert all(r["error"].startswith("UNIMPLEMENTED: ") for r in generated)
    assert report["summary"]["errors"] == 4 and report["summary"]["chorales_scored"] == 0
    assert report["similar"]["query"]["name"] == "piece0"
    assert {s["track_id"] for s in report["similar"]["results"]} == {r["track_id"] for r in uploads[1:]}
    assert set(report["score_comparison"]) == {"audio", "generated"}
    assert report["score_comparison"]["generated"] == dict.fromkeys(report["score_comparison"]["audio"])
