"""``musicaas analyze`` and ``musicaas similar`` against a fake gateway: batch ingestion in input
order, per-file errors, plots, the summary, the API key the command sends, and its JSON."""

from __future__ import annotations

import json
import os
import time

import pytest

from musicaas_cli import main as cli


def test_cli_batch_keeps_input_order_and_summarises(fake_gateway, wavs, tmp_path, capsys):
    paths = []
    for i, w in enumerate(wavs[:3]):
        paths.append(tmp_path / f"good{i}.wav")
        paths[-1].write_bytes(w)
    text = tmp_path / "notes.wav"
    text.write_bytes(b"TEXT, not audio")
    cut = tmp_path / "cut.wav"
    cut.write_bytes(wavs[3][:5000])
    files = [str(paths[0]), str(text), str(paths[1]), str(cut), str(tmp_path / "missing.wav"), str(paths[2])]

    t0 = time.monotonic()
    code = cli.main(["analyze", *files, "--json", "--jobs", "3", "--plot", str(tmp_path / "plots")])
    wall = time.monotonic() - t0
    out, err = capsys.readouterr()
    assert code == 1  # some files failed

    records = [json.loads(line) for line in out.splitlines()]  # stdout: JSON lines only
    assert [r["path"] for r in records] == files
    assert all(next(iter(r)) == "path" for r in records)
    ok = [r for r in records if "error" not in r]
    assert [r["path"] for r in ok] == [str(p) for p in paths]
    assert records[1]["error"].startswith("INVALID_ARGUMENT")
    assert records[3]["error"].startswith("INVALID_ARGUMENT: truncated") and records[3]["track_id"].startswith("trk_")
    assert records[4]["error"].startswith("FileNotFoundError")
    for r in ok:
        png = tmp_path / "plots" / (os.path.basename(r["path"])[:-4] + ".png")
        assert r["plot"] == str(png) and png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"

    # uploads ran at once (bounded by --jobs), and the summary went to stderr
    assert 2 <= fake_gateway.max_uploading <= 3
    assert "6 files: 3 ok, 3 failed" in err
    audio_s = sum(r["duration_s"] for r in ok)
    assert f"{audio_s:.1f} s of audio" in err
    assert wall < 60


def test_cli_batch_plain_output_and_summary_on_stdout(fake_gateway, wavs, analyses, tmp_path, capsys):
    good = tmp_path / "good.wav"
    good.write_bytes(wavs[0])
    code = cli.main(["analyze", str(good)])
    out, err = capsys.readouterr()
    assert code == 0
    lines = out.splitlines()
    assert lines[0].startswith(f"{good}: trk_") and "BPM" in lines[0]
    a = analyses[0]
    assert f"key {a.key.tonic} {a.key.mode}" in lines[0] and f"{round(a.tempo_bpm, 2):.1f} BPM" in lines[0]
    assert lines[-1].startswith("1 file: 1 ok, 0 failed;") and "audio s per wall s" in lines[-1]
    assert err == ""  # no progress bar when stderr is not a terminal


def test_cli_json_record_is_the_analysis_of_the_file(fake_gateway, wavs, analyses, tmp_path, capsys):
    good = tmp_path / "good.wav"
    good.write_bytes(wavs[2])
    assert cli.main(["analyze", str(good), "--json"]) == 0
    (record,) = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    a = analyses[2]
    first = ["path", "track_id", "key", "mode", "key_confidence", "tempo_bpm", "beats_s", "duration_s", "loudness_lufs"]
    assert list(record)[: len(first)] == first
    assert record["key"] == a.key.tonic and record["mode"] == a.key.mode
    assert record["tempo_bpm"] == pytest.approx(a.tempo_bpm, abs=0.005)
    assert record["beats_s"] == pytest.approx(list(a.beats_s), abs=0.0005)
    assert record["duration_s"] == pytest.approx(a.duration_s, abs=0.0005)
    assert "embedding" not in record and record["midi"] is None


@pytest.mark.parametrize("where", ["before", "after"])
def test_cli_reads_the_api_key_of_the_state_dir_given_before_or_after_the_command(
    fake_gateway, wavs, tmp_path, monkeypatch, capsys, where
):
    monkeypatch.delenv("MUSICAAS_API_KEY")
    state = tmp_path / "state"
    state.mkdir()
    (state / "api_key").write_text("dev-from-state-dir\n")
    good = tmp_path / "good.wav"
    good.write_bytes(wavs[0])
    option = ["--state-dir", str(state)]
    argv = option + ["analyze", str(good)] if where == "before" else ["analyze", str(good)] + option
    assert cli.main(argv) == 0, capsys.readouterr()
    assert fake_gateway.authorizations == {"Bearer dev-from-state-dir"}


def test_cli_without_an_api_key_exits_with_a_message(fake_gateway, tmp_path, monkeypatch):
    monkeypatch.delenv("MUSICAAS_API_KEY")
    empty = tmp_path / "empty"
    with pytest.raises(SystemExit) as info:
        cli.main(["similar", "trk_x", "--state-dir", str(empty)])
    assert str(info.value) == (
        f"no API key: set MUSICAAS_API_KEY or start the stack (musicaas up) to create {empty / 'api_key'}"
    )
    assert fake_gateway.authorizations == set()  # nothing was sent


def test_cli_similar_json_and_not_found(fake_gateway, wavs, tmp_path, capsys):
    files = []
    for i, w in enumerate(wavs[:3]):
        files.append(tmp_path / f"good{i}.wav")
        files[-1].write_bytes(w)
    assert cli.main(["analyze", *map(str, files), "--json"]) == 0
    ids = [json.loads(line)["track_id"] for line in capsys.readouterr().out.splitlines()]

    assert cli.main(["similar", ids[0], "--limit", "2", "--json"]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert [r["track_id"] for r in rows] == sorted(ids[1:])
    assert [r["score"] for r in rows] == [0.9, 0.8]
    assert all(r["source"] == "upload" and r["mode"] in ("major", "minor") for r in rows)
    assert set(rows[0]) == {"track_id", "score", "title", "tags", "key", "mode", "tempo_bpm", "source", "duration_s",
                            "loudness_lufs", "energy", "danceability", "valence", "artist", "composer", "album",
                            "genre", "year", "reason"}

    assert cli.main(["similar", "trk_unknown", "--json"]) == 1
    assert json.loads(capsys.readouterr().out) == {"error": "NOT_FOUND: track trk_unknown not found"}
