"""A small synchronous client of the public gateway API, and what every caller of it shares:
where the gateway is, which API key to send, the text of a failed call and the JSON record of
an analysed track. The ``musicaas`` command line and its demo are built on it."""

from __future__ import annotations

import math
import os
import threading
import time
from collections.abc import Sequence
from pathlib import Path
from typing import BinaryIO

import grpc
from google.protobuf import json_format
from google.protobuf.descriptor import Descriptor, FieldDescriptor

from musicaas.common.v1 import common_pb2
from musicaas.gateway.v1 import gateway_pb2, gateway_pb2_grpc
from musicaas.generator.v1 import generator_pb2
from musicaas.recommender.v1 import recommender_pb2
from musicaas.runtime.protoconv import mode_name

CHUNK_BYTES = 512 * 1024
DONE_STATES = (common_pb2.TRACK_STATE_INDEXED, common_pb2.TRACK_STATE_FAILED)
GENERATION_DONE_STATES = (generator_pb2.GENERATION_STATE_COMPLETED, generator_pb2.GENERATION_STATE_FAILED)
DEFAULT_GATEWAY = "127.0.0.1:50051"


class NoApiKey(LookupError):
    """Neither ``$MUSICAAS_API_KEY`` nor the dev key file in the state folder exists."""


def gateway_addr() -> str:
    """The gateway address: ``$MUSICAAS_GATEWAY``, else 127.0.0.1:50051."""
    return os.environ.get("MUSICAAS_GATEWAY", DEFAULT_GATEWAY)


def resolve_api_key(state_dir: Path) -> str:
    """The API key: ``$MUSICAAS_API_KEY``, else the dev key that ``musicaas up`` writes to ``state_dir/api_key``.

    Raises
    ------
    NoApiKey
        When neither exists (the message names the file and how to create it).
    """
    key = os.environ.get("MUSICAAS_API_KEY")
    if key:
        return key
    path = Path(state_dir) / "api_key"
    if path.exists():
        return path.read_text().strip()
    raise NoApiKey(f"no API key: set MUSICAAS_API_KEY or start the stack (musicaas up) to create {path}")


def rpc_error_text(exc: grpc.RpcError) -> str:
    """``"<STATUS_NAME>: <details>"`` of a failed call, e.g. ``"NOT_FOUND: track trk_... not found"``."""
    return f"{exc.code().name}: {exc.details()}"


def json_float(x: float, ndigits: int) -> float | None:
    """``x`` rounded to ``ndigits`` decimals; None when it is NaN or infinite (JSON has neither)."""
    x = float(x)
    return round(x, ndigits) if math.isfinite(x) else None


#: TrackAnalysis fields that the analysis record leaves out (vectors for machines, not people).
_RECORD_OMITS = ("embedding", "descriptor_embedding")
_FLOAT_TYPES = (FieldDescriptor.TYPE_FLOAT, FieldDescriptor.TYPE_DOUBLE)
_MODE_ENUM = common_pb2.Mode.DESCRIPTOR.full_name


def _json_value(field: FieldDescriptor, value):
    """One value of ``MessageToDict(..., use_integers_for_enums=True)`` for the analysis record."""
    if isinstance(value, list):
        return [_json_value(field, v) for v in value]
    if field.message_type is not None:
        return None if value is None else _json_fields(field.message_type, value)
    if field.enum_type is not None and field.enum_type.full_name == _MODE_ENUM:
        return mode_name(value)
    if field.type in _FLOAT_TYPES:
        return json_float(value, 4)  # json_format writes NaN and infinities as strings; float() reads them
    if field.name == "time_signature" or isinstance(value, str):
        return value or None  # no key, no metre: null rather than "" or 0
    return value


def _json_fields(descriptor: Descriptor, fields: dict) -> dict:
    """``fields`` in the message's field order, every field present (an unset sub-message as None)."""
    return {f.name: _json_value(f, fields.get(f.name)) for f in descriptor.fields if f.name not in _RECORD_OMITS}


def analysis_record(track: common_pb2.Track) -> dict:
    """The JSON record of an analysed track (``musicaas analyze --json``, the demo's report).

    The first keys are the original record, in this order: ``track_id``, ``key`` (tonic, null
    when none), ``mode`` ("major"/"minor"/null), ``key_confidence`` (4 decimals), ``tempo_bpm``
    (2), ``beats_s`` (3), ``duration_s`` (3), ``loudness_lufs`` (2; null when not finite).
    Every other ``TrackAnalysis`` field but the two vectors (``embedding``,
    ``descriptor_embedding``) follows under its proto name (``tags`` as ``[{name, score}]``,
    best first; ``embedding_model`` null without the model), in
    proto order, nested as in the message: floating-point numbers rounded to 4 decimals, modes as
    "major"/"minor", null for a NaN or infinite number, an empty string, a time signature of
    0 (unknown) and an unset message (``midi`` for audio input).
    """
    a = track.analysis
    record = {
        "track_id": track.track_id,
        "key": a.key or None,
        "mode": mode_name(a.mode),
        "key_confidence": round(a.key_confidence, 4),
        "tempo_bpm": round(a.tempo_bpm, 2),
        "beats_s": [round(b, 3) for b in a.beats_s],
        "duration_s": round(a.duration_s, 3),
        "loudness_lufs": json_float(a.loudness_lufs, 2),
    }
    fields = json_format.MessageToDict(
        a, preserving_proto_field_name=True, use_integers_for_enums=True, always_print_fields_with_no_presence=True
    )
    rest = _json_fields(a.DESCRIPTOR, fields)
    record.update((name, value) for name, value in rest.items() if name not in record)
    return record


def _poll(fetch, done_states, state_name, what: str, timeout_s: float, poll_s: float,
          stop: threading.Event | None = None):
    """Call ``fetch()`` every ``poll_s`` seconds until its ``.state`` is in ``done_states``; return that message.

    Raises ``TimeoutError`` (naming ``what`` and the last state via ``state_name``) after
    ``timeout_s`` seconds, or ``TimeoutError("interrupted")`` as soon as ``stop`` is set.
    """
    deadline = time.monotonic() + timeout_s
    while True:
        msg = fetch()
        if msg.state in done_states:
            return msg
        if time.monotonic() > deadline:
            raise TimeoutError(f"{what} still {state_name(msg.state)} after {timeout_s:.0f} s")
        if stop is None:
            time.sleep(poll_s)
        elif stop.wait(poll_s):
            raise TimeoutError("interrupted")


def generation_params(
    *, key: str, tempo_bpm: float = 100.0, num_bars: int = 8, temperature: float = 1.0, seed: int | None = None,
    metre: str | None = None, style: str | None = None, instrument: int | None = None, top_k: int | None = None,
    top_p: float | None = None, num_variations: int | None = None, primer_midi: bytes | None = None,
    melody_midi: bytes | None = None, key_guidance: bool | None = None,
) -> generator_pb2.GenerationParams:
    """``GenerationParams`` from keyword arguments; None leaves a control at the server's default
    (metre "4/4", style "chorale", the style's instrument, top_k 0 = off, top_p 1.0, one
    variation, a random seed, key guidance on). Units: ``tempo_bpm`` in BPM, ``num_bars`` in bars."""
    params = generator_pb2.GenerationParams(key=key, tempo_bpm=tempo_bpm, num_bars=num_bars, temperature=temperature)
    optional = dict(
        seed=seed, metre=metre, style=style, instrument=instrument, top_k=top_k, top_p=top_p,
        num_variations=num_variations, primer_midi=primer_midi, melody_midi=melody_midi, key_guidance=key_guidance,
    )
    for name, value in optional.items():
        if value is not None:
            setattr(params, name, value)
    return params


class GatewayClient:
    """Calls ``musicaas.gateway.v1.GatewayService`` with an API key and per-call deadlines.

    Errors are the ``grpc.RpcError`` of the call (``.code()``, ``.details()``).
    """

    def __init__(self, addr: str, api_key: str, *, timeout_s: float = 60.0, max_message_bytes: int = 64 * 1024 * 1024,
                 ca_file: str | os.PathLike | None = None):
        """``ca_file``: the gateway serves TLS; verify it against this CA certificate (PEM)
        (default ``$MUSICAAS_GATEWAY_CA_FILE``; plaintext when neither is set)."""
        self.addr = addr
        self.timeout_s = timeout_s
        options = [
            ("grpc.max_receive_message_length", max_message_bytes),
            ("grpc.max_send_message_length", max_message_bytes),
        ]
        ca_file = ca_file or os.environ.get("MUSICAAS_GATEWAY_CA_FILE")
        if ca_file:
            creds = grpc.ssl_channel_credentials(root_certificates=Path(ca_file).read_bytes())
            self.channel = grpc.secure_channel(addr, creds, options=options)
        else:
            self.channel = grpc.insecure_channel(addr, options=options)
        self.stub = gateway_pb2_grpc.GatewayServiceStub(self.channel)
        self.metadata = (("authorization", f"Bearer {api_key}"),)

    def close(self) -> None:
        """Close the channel."""
        self.channel.close()

    def __enter__(self) -> "GatewayClient":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    @staticmethod
    def upload_metadata(*, filename: str, title: str = "", artist: str = "", composer: str = "", album: str = "",
                        year: int = 0, genre: str = "", tags: Sequence[str] = ()) -> gateway_pb2.UploadMetadata:
        """The first message of an upload. Fields left empty (or ``year`` 0) are read by the
        analyzer from the file's own tags; the gateway checks the bounds (text at most 512
        characters, ``year`` 0 or 1-9999, at most 32 ``tags`` of 1-64 characters) and answers
        INVALID_ARGUMENT naming the field."""
        return gateway_pb2.UploadMetadata(filename=filename, title=title, artist=artist, composer=composer,
                                          album=album, year=int(year), genre=genre, tags=list(tags))

    def upload_bytes(self, data: bytes, *, filename: str, title: str = "", **metadata) -> gateway_pb2.UploadTrackResponse:
        """Upload ``data`` in 512 KiB chunks after the metadata (``metadata``: the keyword
        arguments of :meth:`upload_metadata`: ``artist``, ``composer``, ``album``, ``year``,
        ``genre``, ``tags``). Raises ``grpc.RpcError`` (INVALID_ARGUMENT for empty or non-audio
        data or metadata out of bounds, RESOURCE_EXHAUSTED over the size limit)."""
        first = self.upload_metadata(filename=filename, title=title, **metadata)

        def messages():
            yield gateway_pb2.UploadTrackRequest(metadata=first)
            for i in range(0, len(data), CHUNK_BYTES):
                yield gateway_pb2.UploadTrackRequest(chunk=data[i : i + CHUNK_BYTES])

        return self.stub.UploadTrack(messages(), metadata=self.metadata, timeout=self.timeout_s)

    def upload_stream(
        self, file: BinaryIO, *, filename: str, title: str = "", timeout_s: float | None = None, **metadata,
    ) -> gateway_pb2.UploadTrackResponse:
        """Upload what ``file`` (a binary file object) holds from its position, read and sent in
        512 KiB chunks as the call goes, so that memory stays bounded whatever the size.
        ``timeout_s`` is the call's deadline (default: the client's); ``metadata`` as in
        :meth:`upload_bytes`. Raises ``grpc.RpcError`` as :meth:`upload_bytes`."""
        first = self.upload_metadata(filename=filename, title=title, **metadata)

        def messages():
            yield gateway_pb2.UploadTrackRequest(metadata=first)
            while chunk := file.read(CHUNK_BYTES):
                yield gateway_pb2.UploadTrackRequest(chunk=chunk)

        return self.stub.UploadTrack(messages(), metadata=self.metadata,
                                     timeout=self.timeout_s if timeout_s is None else timeout_s)

    def upload_file(self, path: Path, *, title: str = "", **metadata) -> gateway_pb2.UploadTrackResponse:
        """Upload the file at ``path`` (its name is the container hint; the title, when not
        given, comes from the file's own title tag, else its name); ``metadata`` as in
        :meth:`upload_bytes`."""
        return self.upload_bytes(Path(path).read_bytes(), filename=Path(path).name, title=title, **metadata)

    def get_track(self, track_id: str) -> common_pb2.Track:
        """State and analysis of one track. Raises ``grpc.RpcError`` NOT_FOUND for an unknown id."""
        return self.stub.GetTrack(gateway_pb2.GetTrackRequest(track_id=track_id), metadata=self.metadata, timeout=10).track

    def get_tracks(self, track_ids: list[str]) -> gateway_pb2.GetTracksResponse:
        """Up to 100 tracks at once: ``.tracks`` (found, in request order) and ``.missing_track_ids``."""
        return self.stub.GetTracks(gateway_pb2.GetTracksRequest(track_ids=track_ids), metadata=self.metadata,
                                   timeout=30)

    def list_tracks(self, *, states: list[int] = (), page_size: int = 100, include_analysis: bool = False):
        """Every track of the caller's tenant (deleted ones left out), page after page, by id.

        Yields ``common_pb2.Track``; ``states`` keeps only those states.
        """
        token = ""
        while True:
            resp = self.stub.ListTracks(gateway_pb2.ListTracksRequest(
                states=states, page_size=page_size, page_token=token, include_analysis=include_analysis,
            ), metadata=self.metadata, timeout=30)
            yield from resp.tracks
            token = resp.next_page_token
            if not token:
                return

    def usage(self, *, day_from: str = "", day_to: str = "") -> gateway_pb2.GetUsageResponse:
        """The tenant's usage per UTC day (``YYYY-MM-DD``; today when empty) and its limits."""
        return self.stub.GetUsage(gateway_pb2.GetUsageRequest(day_from=day_from, day_to=day_to),
                                  metadata=self.metadata, timeout=30)

    def register_webhook(self, url: str, events: list[str] = ()) -> gateway_pb2.RegisterWebhookResponse:
        """Register an HTTPS endpoint for the tenant's events (all partner events when ``events`` is
        empty); ``.webhook.secret`` is the signing secret, shown this once."""
        return self.stub.RegisterWebhook(gateway_pb2.RegisterWebhookRequest(url=url, events=events),
                                         metadata=self.metadata, timeout=30)

    def list_webhooks(self):
        """The tenant's webhooks (without secrets)."""
        return self.stub.ListWebhooks(gateway_pb2.ListWebhooksRequest(), metadata=self.metadata, timeout=30).webhooks

    def delete_webhook(self, webhook_id: str) -> gateway_pb2.DeleteWebhookResponse:
        """Remove a webhook."""
        return self.stub.DeleteWebhook(gateway_pb2.DeleteWebhookRequest(webhook_id=webhook_id),
                                       metadata=self.metadata, timeout=30)

    def delete_track(self, track_id: str) -> gateway_pb2.DeleteTrackResponse:
        """Delete a track (idempotent). Raises ``grpc.RpcError`` NOT_FOUND for an id the tenant never had."""
        return self.stub.DeleteTrack(gateway_pb2.DeleteTrackRequest(track_id=track_id), metadata=self.metadata,
                                     timeout=30)

    def wait_track(
        self, track_id: str, *, timeout_s: float = 300.0, poll_s: float = 0.25, stop: threading.Event | None = None
    ) -> common_pb2.Track:
        """Poll GetTrack until the track is indexed or failed.

        Raises
        ------
        TimeoutError
            When neither happens within ``timeout_s`` seconds, or (``"interrupted"``) when
            ``stop`` is set first.
        """
        return _poll(lambda: self.get_track(track_id), DONE_STATES, common_pb2.TrackState.Name,
                     f"track {track_id}", timeout_s, poll_s, stop)

    def generate(
        self, *, key: str, tempo_bpm: float = 100.0, num_bars: int = 8, temperature: float = 1.0,
        seed: int | None = None, timeout_s: float = 300.0, **controls,
    ) -> generator_pb2.GenerationResult:
        """Generate synchronously; ``controls`` are the other :func:`generation_params` arguments
        (``metre``, ``style``, ``instrument``, ``top_k``, ``top_p``, ``num_variations``,
        ``primer_midi``, ``melody_midi``). The result's ``pieces`` hold every variation."""
        params = generation_params(
            key=key, tempo_bpm=tempo_bpm, num_bars=num_bars, temperature=temperature, seed=seed, **controls
        )
        return self.stub.GenerateTrack(
            gateway_pb2.GenerateTrackRequest(params=params), metadata=self.metadata, timeout=timeout_s
        ).result

    def generate_stream(
        self, *, key: str, tempo_bpm: float = 100.0, num_bars: int = 8, temperature: float = 1.0,
        seed: int | None = None, generation_id: str = "", timeout_s: float = 600.0, **controls,
    ):
        """Start ``GenerateTrackStream``: the returned call iterates over progress events
        (``GenerateTrackStreamResponse``, each with its ``progress``; the last, stage COMPLETED,
        holds ``progress.result``);
        ``call.cancel()`` stops the generation."""
        params = generation_params(
            key=key, tempo_bpm=tempo_bpm, num_bars=num_bars, temperature=temperature, seed=seed, **controls
        )
        return self.stub.GenerateTrackStream(
            gateway_pb2.GenerateTrackRequest(params=params, generation_id=generation_id),
            metadata=self.metadata, timeout=timeout_s,
        )

    def submit_generation(
        self, *, key: str, tempo_bpm: float = 100.0, num_bars: int = 8, temperature: float = 1.0,
        seed: int | None = None, generation_id: str = "", **controls,
    ) -> gateway_pb2.SubmitGenerationResponse:
        """Start an asynchronous generation; returns its id at once (poll :meth:`wait_generation`)."""
        params = generation_params(
            key=key, tempo_bpm=tempo_bpm, num_bars=num_bars, temperature=temperature, seed=seed, **controls
        )
        return self.stub.SubmitGeneration(
            gateway_pb2.SubmitGenerationRequest(params=params, generation_id=generation_id),
            metadata=self.metadata, timeout=30,
        )

    def get_generation(self, generation_id: str, *, include_data: bool = False) -> generator_pb2.GenerationJob:
        """The stored generation job (bytes of the pieces with ``include_data``). Raises ``grpc.RpcError`` NOT_FOUND."""
        return self.stub.GetGeneration(
            gateway_pb2.GetGenerationRequest(generation_id=generation_id, include_data=include_data),
            metadata=self.metadata, timeout=60,
        ).generation

    def wait_generation(
        self, generation_id: str, *, timeout_s: float = 600.0, poll_s: float = 0.25, include_data: bool = False
    ) -> generator_pb2.GenerationJob:
        """Poll GetGeneration until the job is completed or failed (check ``.state`` and ``.error``).

        Raises
        ------
        TimeoutError
            When neither happens within ``timeout_s`` seconds.
        """
        job = _poll(lambda: self.get_generation(generation_id), GENERATION_DONE_STATES,
                    generator_pb2.GenerationState.Name, f"generation {generation_id}", timeout_s, poll_s)
        if include_data and job.state == generator_pb2.GENERATION_STATE_COMPLETED:
            job = self.get_generation(generation_id, include_data=True)
        return job

    def similar(self, track_id: str, *, limit: int = 10, flt: recommender_pb2.TrackFilter | None = None,
                diversity: float = 0.0):
        """Up to ``limit`` (1-100) indexed tracks nearest to ``track_id`` by cosine similarity of
        embeddings, best first; ``diversity`` in [0, 1] re-ranks by maximal marginal relevance."""
        request = gateway_pb2.SimilarTracksRequest(track_id=track_id, limit=limit, diversity=diversity)
        if flt is not None:
            request.filter.CopyFrom(flt)
        return self.stub.SimilarTracks(request, metadata=self.metadata, timeout=30).tracks

    def recommend(
        self, *, liked: list[str] = (), disliked: list[str] = (), limit: int = 10,
        positive: list[tuple[str, float]] = (), negative: list[tuple[str, float]] = (),
        strategy: str = "", attributes: list[recommender_pb2.AttributeTarget] = (),
        seed_tags: list[str] = (), diversity: float = 0.0, listener_id: str = "",
        flt: recommender_pb2.TrackFilter | None = None,
    ):
        """Up to ``limit`` tracks near the liked / positive examples and away from the disliked /
        negative ones, best first. ``positive`` and ``negative`` are ``(track id, weight)``
        pairs; ``strategy`` is ``average_vector``, ``best_score`` (default) or ``sum_scores``;
        ``attributes`` are targets and bounds (:func:`attribute_targets`)."""
        request = gateway_pb2.RecommendRequest(
            liked_track_ids=list(liked), disliked_track_ids=list(disliked), limit=limit,
            positive=[recommender_pb2.WeightedExample(track_id=t, weight=w) for t, w in positive],
            negative=[recommender_pb2.WeightedExample(track_id=t, weight=w) for t, w in negative],
            strategy=strategy_value(strategy), attributes=list(attributes), seed_tags=list(seed_tags),
            diversity=diversity, listener_id=listener_id,
        )
        if flt is not None:
            request.filter.CopyFrom(flt)
        return self.stub.Recommend(request, metadata=self.metadata, timeout=30).tracks

    def search(self, text: str, *, limit: int = 10, diversity: float = 0.0,
               flt: recommender_pb2.TrackFilter | None = None):
        """Free-text search over the tenant's tracks (tags, analysis, metadata), best first."""
        request = recommender_pb2.SearchTracksRequest(text=text, limit=limit, diversity=diversity)
        if flt is not None:
            request.filter.CopyFrom(flt)
        return self.stub.SearchTracks(request, metadata=self.metadata, timeout=30).tracks

    def discover(self, *, target: str = "", context: list[tuple[str, str]], limit: int = 10,
                 flt: recommender_pb2.TrackFilter | None = None):
        """Discovery (``target`` set) or context search: ``context`` is (positive, negative) track id pairs."""
        request = recommender_pb2.DiscoverTracksRequest(
            target_track_id=target, limit=limit,
            context=[recommender_pb2.ContextPair(positive_track_id=p, negative_track_id=n) for p, n in context],
        )
        if flt is not None:
            request.filter.CopyFrom(flt)
        return self.stub.DiscoverTracks(request, metadata=self.metadata, timeout=30).tracks

    def record_interactions(self, rows: list[common_pb2.Interaction]) -> gateway_pb2.RecordInteractionsResponse:
        """Record up to 1000 interactions; ``.recorded`` and ``.rejected`` (index, field, reason) per row."""
        return self.stub.RecordInteractions(gateway_pb2.RecordInteractionsRequest(interactions=rows),
                                            metadata=self.metadata, timeout=60)

    def recommend_for_listener(
        self, listener_id: str, *, limit: int = 10, diversity: float = 0.0, include_played: bool = False,
        attributes: list[recommender_pb2.AttributeTarget] = (), flt: recommender_pb2.TrackFilter | None = None,
    ) -> recommender_pb2.RecommendForListenerResponse:
        """Recommendations for one listener: ``.tracks`` (each with its ``reason``), ``.model_version``,
        ``.collaborative_weight``, ``.interactions``."""
        request = recommender_pb2.RecommendForListenerRequest(
            listener_id=listener_id, limit=limit, diversity=diversity, include_played=include_played,
            attributes=list(attributes),
        )
        if flt is not None:
            request.filter.CopyFrom(flt)
        return self.stub.RecommendForListener(request, metadata=self.metadata, timeout=30)

    def train_listener_model(self) -> recommender_pb2.TrainListenerModelResponse:
        """Retrain the tenant's listener model now; the version that went live."""
        return self.stub.TrainListenerModel(recommender_pb2.TrainListenerModelRequest(), metadata=self.metadata,
                                            timeout=300)


#: Wire values of the recommend strategies, by their Qdrant names.
STRATEGIES = {
    "": recommender_pb2.RECOMMEND_STRATEGY_UNSPECIFIED,
    "average_vector": recommender_pb2.RECOMMEND_STRATEGY_AVERAGE_VECTOR,
    "best_score": recommender_pb2.RECOMMEND_STRATEGY_BEST_SCORE,
    "sum_scores": recommender_pb2.RECOMMEND_STRATEGY_SUM_SCORES,
}

#: Wire values of the interaction types, by their lower-case names (``play``, ``skip``, ...).
INTERACTION_EVENTS = {
    common_pb2.InteractionType.Name(v)[len("INTERACTION_TYPE_"):].lower(): v
    for v in common_pb2.InteractionType.values() if v
}


def strategy_value(name: str) -> int:
    """The wire value of a strategy name; ValueError for an unknown one."""
    try:
        return STRATEGIES[name]
    except KeyError:
        raise ValueError(f"unknown strategy {name!r}: expected one of {', '.join(s for s in STRATEGIES if s)}") from None


def attribute_targets(*, target: dict[str, float] = None, minimum: dict[str, float] = None,
                      maximum: dict[str, float] = None) -> list[recommender_pb2.AttributeTarget]:
    """Attribute targets and bounds, one entry per attribute name (``tempo_bpm``, ``energy``,
    ``danceability``, ``valence``, ``loudness_lufs``, ``duration_s``, ``key``, ``mode``, ``year``)."""
    out: dict[str, recommender_pb2.AttributeTarget] = {}
    for part, values in (("target", target), ("min", minimum), ("max", maximum)):
        for name, value in (values or {}).items():
            setattr(out.setdefault(name, recommender_pb2.AttributeTarget(name=name)), part, float(value))
    return list(out.values())


def scored_record(t: recommender_pb2.ScoredTrack) -> dict:
    """A result as a JSON-ready dict: id, score, title, tags (``{name, score}``, best first),
    key, mode, tempo, attributes, metadata and the reason that chose it."""
    meta = t.metadata
    return {
        "track_id": t.track_id,
        "score": round(t.score, 4),
        "title": t.title or meta.title,
        "tags": [{"name": g.name, "score": round(g.score, 4)} for g in t.tags],
        "key": t.key or None,
        "mode": {common_pb2.MODE_MAJOR: "major", common_pb2.MODE_MINOR: "minor"}.get(t.mode),
        "tempo_bpm": round(t.tempo_bpm, 2),
        "source": common_pb2.TrackSource.Name(t.source)[len("TRACK_SOURCE_"):].lower(),
        "duration_s": round(t.duration_s, 3),
        "loudness_lufs": json_float(t.loudness_lufs, 2),
        "energy": round(t.energy, 4),
        "danceability": round(t.danceability, 4),
        "valence": round(t.valence, 4),
        "artist": meta.artist or None,
        "composer": meta.composer or None,
        "album": meta.album or None,
        "genre": meta.genre or None,
        "year": meta.year or None,
        "reason": t.reason or None,
    }
