"""The checked-in generated code matches protos/, and proto packages mirror their folders."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_generated_code_is_current():
    proc = subprocess.run([sys.executable, str(ROOT / "tools" / "gen_protos.py"), "--check"], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_packages_mirror_folders_and_fields_are_commented():
    protos = sorted((ROOT / "protos").rglob("*.proto"))
    assert {p.parent.parent.name for p in protos} == {"common", "analyzer", "generator", "recommender", "gateway", "events"}
    for path in protos:
        text = path.read_text()
        folder = ".".join(path.relative_to(ROOT / "protos").parent.parts)
        assert f"package {folder};" in text, path
        lines = text.splitlines()
        for i, line in enumerate(lines):
            if re.match(r"\s+(optional |repeated )?[\w.]+ \w+ = \d+;", line):
                assert lines[i - 1].strip().startswith("//"), f"{path.name}:{i + 1} has no comment: {line.strip()}"


def _messages():
    """Every message descriptor of the musicaas packages, nested ones included."""
    from musicaas.analyzer.v1 import analyzer_pb2
    from musicaas.common.v1 import common_pb2
    from musicaas.events.v1 import events_pb2
    from musicaas.gateway.v1 import gateway_pb2
    from musicaas.generator.v1 import generator_pb2
    from musicaas.recommender.v1 import recommender_pb2

    stack = [m for mod in (analyzer_pb2, common_pb2, events_pb2, gateway_pb2, generator_pb2, recommender_pb2)
             for m in mod.DESCRIPTOR.message_types_by_name.values()]
    while stack:
        message = stack.pop()
        stack.extend(message.nested_types)
        yield message


def test_blob_references_are_named_blob_and_bytes_are_not():
    from google.protobuf.descriptor import FieldDescriptor

    refs, data = [], []
    for message in _messages():
        for field in message.fields:
            if field.message_type is not None and field.message_type.full_name == "musicaas.common.v1.BlobRef":
                refs.append(field.full_name)
                assert field.name.endswith("_blob"), f"{field.full_name} is a BlobRef but not named *_blob"
            if field.type == FieldDescriptor.TYPE_BYTES:
                data.append(field.full_name)
                assert not field.name.endswith("_blob"), f"{field.full_name} holds bytes but is named *_blob"
    assert "musicaas.events.v1.TrackUploaded.audio_blob" in refs and "musicaas.common.v1.Track.audio_blob" in refs
    assert "musicaas.generator.v1.GeneratedPiece.midi" in data


def test_generation_results_say_each_thing_once():
    from musicaas.events.v1 import events_pb2
    from musicaas.gateway.v1 import gateway_pb2
    from musicaas.generator.v1 import generator_pb2

    result = generator_pb2.GenerationResult.DESCRIPTOR
    assert set(result.fields_by_name) == {"generation_id", "params", "pieces"}  # no copy of pieces[0]
    # the gateway reuses the generator's messages instead of re-declaring them field by field
    for response in (gateway_pb2.GenerateTrackResponse, generator_pb2.GenerateTrackResponse):
        assert [(f.name, f.message_type) for f in response.DESCRIPTOR.fields] == [("result", result)]
    (progress,) = gateway_pb2.GenerateTrackStreamResponse.DESCRIPTOR.fields
    assert progress.message_type is generator_pb2.GenerationProgress.DESCRIPTOR
    assert generator_pb2.GenerationProgress.DESCRIPTOR.fields_by_name["result"].message_type is result
    # (every event also names its tenant, issue 10)
    assert set(events_pb2.GenerationCompleted.DESCRIPTOR.fields_by_name) == {"generation_id", "params", "pieces",
                                                                           "tenant"}


def test_every_event_names_its_tenant():
    from musicaas.events.v1 import events_pb2

    events = [m for name, m in events_pb2.DESCRIPTOR.message_types_by_name.items() if name != "DeadLetter"]
    assert len(events) == 8
    for message in events:
        assert message.fields_by_name["tenant"].type == message.fields_by_name["tenant"].TYPE_STRING, message.name
