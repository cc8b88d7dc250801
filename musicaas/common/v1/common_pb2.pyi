import datetime

from google.protobuf import timestamp_pb2 as _timestamp_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class Mode(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    MODE_UNSPECIFIED: _ClassVar[Mode]
    MODE_MAJOR: _ClassVar[Mode]
    MODE_MINOR: _ClassVar[Mode]

class TrackSource(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    TRACK_SOURCE_UNSPECIFIED: _ClassVar[TrackSource]
    TRACK_SOURCE_UPLOAD: _ClassVar[TrackSource]
    TRACK_SOURCE_GENERATED: _ClassVar[TrackSource]

class TrackState(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    TRACK_STATE_UNSPECIFIED: _ClassVar[TrackState]
    TRACK_STATE_UPLOADED: _ClassVar[TrackState]
    TRACK_STATE_ANALYZED: _ClassVar[TrackState]
    TRACK_STATE_INDEXED: _ClassVar[TrackState]
    TRACK_STATE_FAILED: _ClassVar[TrackState]
    TRACK_STATE_DELETED: _ClassVar[TrackState]

class InteractionType(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    INTERACTION_TYPE_UNSPECIFIED: _ClassVar[InteractionType]
    INTERACTION_TYPE_PLAY: _ClassVar[InteractionType]
    INTERACTION_TYPE_COMPLETE: _ClassVar[InteractionType]
    INTERACTION_TYPE_SKIP: _ClassVar[InteractionType]
    INTERACTION_TYPE_LIKE: _ClassVar[InteractionType]
    INTERACTION_TYPE_DISLIKE: _ClassVar[InteractionType]
    INTERACTION_TYPE_ADD_TO_PLAYLIST: _ClassVar[InteractionType]
MODE_UNSPECIFIED: Mode
MODE_MAJOR: Mode
MODE_MINOR: Mode
TRACK_SOURCE_UNSPECIFIED: TrackSource
TRACK_SOURCE_UPLOAD: TrackSource
TRACK_SOURCE_GENERATED: TrackSource
TRACK_STATE_UNSPECIFIED: TrackState
TRACK_STATE_UPLOADED: TrackState
TRACK_STATE_ANALYZED: TrackState
TRACK_STATE_INDEXED: TrackState
TRACK_STATE_FAILED: TrackState
TRACK_STATE_DELETED: TrackState
INTERACTION_TYPE_UNSPECIFIED: InteractionType
INTERACTION_TYPE_PLAY: InteractionType
INTERACTION_TYPE_COMPLETE: InteractionType
INTERACTION_TYPE_SKIP: InteractionType
INTERACTION_TYPE_LIKE: InteractionType
INTERACTION_TYPE_DISLIKE: InteractionType
INTERACTION_TYPE_ADD_TO_PLAYLIST: InteractionType

class TrackAnalysis(_message.Message):
    __slots__ = ("duration_s", "sample_rate_hz", "tempo_bpm", "beats_s", "key", "mode", "key_confidence", "loudness_lufs", "embedding", "analyzer_version", "is_silent", "time_signature", "time_signature_confidence", "tempo_confidence", "mode_confidence", "tempo_candidates", "features", "descriptors", "scores", "bars", "beats", "tatums", "sections", "segments", "midi", "descriptor_embedding", "tags", "embedding_model")
    DURATION_S_FIELD_NUMBER: _ClassVar[int]
    SAMPLE_RATE_HZ_FIELD_NUMBER: _ClassVar[int]
    TEMPO_BPM_FIELD_NUMBER: _ClassVar[int]
    BEATS_S_FIELD_NUMBER: _ClassVar[int]
    KEY_FIELD_NUMBER: _ClassVar[int]
    MODE_FIELD_NUMBER: _ClassVar[int]
    KEY_CONFIDENCE_FIELD_NUMBER: _ClassVar[int]
    LOUDNESS_LUFS_FIELD_NUMBER: _ClassVar[int]
    EMBEDDING_FIELD_NUMBER: _ClassVar[int]
    ANALYZER_VERSION_FIELD_NUMBER: _ClassVar[int]
    IS_SILENT_FIELD_NUMBER: _ClassVar[int]
    TIME_SIGNATURE_FIELD_NUMBER: _ClassVar[int]
    TIME_SIGNATURE_CONFIDENCE_FIELD_NUMBER: _ClassVar[int]
    TEMPO_CONFIDENCE_FIELD_NUMBER: _ClassVar[int]
    MODE_CONFIDENCE_FIELD_NUMBER: _ClassVar[int]
    TEMPO_CANDIDATES_FIELD_NUMBER: _ClassVar[int]
    FEATURES_FIELD_NUMBER: _ClassVar[int]
    DESCRIPTORS_FIELD_NUMBER: _ClassVar[int]
    SCORES_FIELD_NUMBER: _ClassVar[int]
    BARS_FIELD_NUMBER: _ClassVar[int]
    BEATS_FIELD_NUMBER: _ClassVar[int]
    TATUMS_FIELD_NUMBER: _ClassVar[int]
    SECTIONS_FIELD_NUMBER: _ClassVar[int]
    SEGMENTS_FIELD_NUMBER: _ClassVar[int]
    MIDI_FIELD_NUMBER: _ClassVar[int]
    DESCRIPTOR_EMBEDDING_FIELD_NUMBER: _ClassVar[int]
    TAGS_FIELD_NUMBER: _ClassVar[int]
    EMBEDDING_MODEL_FIELD_NUMBER: _ClassVar[int]
    duration_s: float
    sample_rate_hz: int
    tempo_bpm: float
    beats_s: _containers.RepeatedScalarFieldContainer[float]
    key: str
    mode: Mode
    key_confidence: float
    loudness_lufs: float
    embedding: _containers.RepeatedScalarFieldContainer[float]
    analyzer_version: str
    is_silent: bool
    time_signature: int
    time_signature_confidence: float
    tempo_confidence: float
    mode_confidence: float
    tempo_candidates: _containers.RepeatedCompositeFieldContainer[TempoCandidate]
    features: AudioFeatures
    descriptors: SpectralDescriptors
    scores: EvaluationScores
    bars: _containers.RepeatedCompositeFieldContainer[TimeInterval]
    beats: _containers.RepeatedCompositeFieldContainer[TimeInterval]
    tatums: _containers.RepeatedCompositeFieldContainer[TimeInterval]
    sections: _containers.RepeatedCompositeFieldContainer[Section]
    segments: _containers.RepeatedCompositeFieldContainer[Segment]
    midi: MidiFeatures
    descriptor_embedding: _containers.RepeatedScalarFieldContainer[float]
    tags: _containers.RepeatedCompositeFieldContainer[TagScore]
    embedding_model: str
    def __init__(self, duration_s: _Optional[float] = ..., sample_rate_hz: _Optional[int] = ..., tempo_bpm: _Optional[float] = ..., beats_s: _Optional[_Iterable[float]] = ..., key: _Optional[str] = ..., mode: _Optional[_Union[Mode, str]] = ..., key_confidence: _Optional[float] = ..., loudness_lufs: _Optional[float] = ..., embedding: _Optional[_Iterable[float]] = ..., analyzer_version: _Optional[str] = ..., is_silent: _Optional[bool] = ..., time_signature: _Optional[int] = ..., time_signature_confidence: _Optional[float] = ..., tempo_confidence: _Optional[float] = ..., mode_confidence: _Optional[float] = ..., tempo_candidates: _Optional[_Iterable[_Union[TempoCandidate, _Mapping]]] = ..., features: _Optional[_Union[AudioFeatures, _Mapping]] = ..., descriptors: _Optional[_Union[SpectralDescriptors, _Mapping]] = ..., scores: _Optional[_Union[EvaluationScores, _Mapping]] = ..., bars: _Optional[_Iterable[_Union[TimeInterval, _Mapping]]] = ..., beats: _Optional[_Iterable[_Union[TimeInterval, _Mapping]]] = ..., tatums: _Optional[_Iterable[_Union[TimeInterval, _Mapping]]] = ..., sections: _Optional[_Iterable[_Union[Section, _Mapping]]] = ..., segments: _Optional[_Iterable[_Union[Segment, _Mapping]]] = ..., midi: _Optional[_Union[MidiFeatures, _Mapping]] = ..., descriptor_embedding: _Optional[_Iterable[float]] = ..., tags: _Optional[_Iterable[_Union[TagScore, _Mapping]]] = ..., embedding_model: _Optional[str] = ...) -> None: ...

class TagScore(_message.Message):
    __slots__ = ("name", "score")
    NAME_FIELD_NUMBER: _ClassVar[int]
    SCORE_FIELD_NUMBER: _ClassVar[int]
    name: str
    score: float
    def __init__(self, name: _Optional[str] = ..., score: _Optional[float] = ...) -> None: ...

class TempoCandidate(_message.Message):
    __slots__ = ("tempo_bpm", "weight")
    TEMPO_BPM_FIELD_NUMBER: _ClassVar[int]
    WEIGHT_FIELD_NUMBER: _ClassVar[int]
    tempo_bpm: float
    weight: float
    def __init__(self, tempo_bpm: _Optional[float] = ..., weight: _Optional[float] = ...) -> None: ...

class TimeInterval(_message.Message):
    __slots__ = ("start_s", "duration_s", "confidence")
    START_S_FIELD_NUMBER: _ClassVar[int]
    DURATION_S_FIELD_NUMBER: _ClassVar[int]
    CONFIDENCE_FIELD_NUMBER: _ClassVar[int]
    start_s: float
    duration_s: float
    confidence: float
    def __init__(self, start_s: _Optional[float] = ..., duration_s: _Optional[float] = ..., confidence: _Optional[float] = ...) -> None: ...

class Section(_message.Message):
    __slots__ = ("start_s", "duration_s", "confidence", "loudness_lufs", "tempo_bpm", "tempo_confidence", "key", "key_confidence", "mode", "mode_confidence", "time_signature", "time_signature_confidence", "tags")
    START_S_FIELD_NUMBER: _ClassVar[int]
    DURATION_S_FIELD_NUMBER: _ClassVar[int]
    CONFIDENCE_FIELD_NUMBER: _ClassVar[int]
    LOUDNESS_LUFS_FIELD_NUMBER: _ClassVar[int]
    TEMPO_BPM_FIELD_NUMBER: _ClassVar[int]
    TEMPO_CONFIDENCE_FIELD_NUMBER: _ClassVar[int]
    KEY_FIELD_NUMBER: _ClassVar[int]
    KEY_CONFIDENCE_FIELD_NUMBER: _ClassVar[int]
    MODE_FIELD_NUMBER: _ClassVar[int]
    MODE_CONFIDENCE_FIELD_NUMBER: _ClassVar[int]
    TIME_SIGNATURE_FIELD_NUMBER: _ClassVar[int]
    TIME_SIGNATURE_CONFIDENCE_FIELD_NUMBER: _ClassVar[int]
    TAGS_FIELD_NUMBER: _ClassVar[int]
    start_s: float
    duration_s: float
    confidence: float
    loudness_lufs: float
    tempo_bpm: float
    tempo_confidence: float
    key: str
    key_confidence: float
    mode: Mode
    mode_confidence: float
    time_signature: int
    time_signature_confidence: float
    tags: _containers.RepeatedCompositeFieldContainer[TagScore]
    def __init__(self, start_s: _Optional[float] = ..., duration_s: _Optional[float] = ..., confidence: _Optional[float] = ..., loudness_lufs: _Optional[float] = ..., tempo_bpm: _Optional[float] = ..., tempo_confidence: _Optional[float] = ..., key: _Optional[str] = ..., key_confidence: _Optional[float] = ..., mode: _Optional[_Union[Mode, str]] = ..., mode_confidence: _Optional[float] = ..., time_signature: _Optional[int] = ..., time_signature_confidence: _Optional[float] = ..., tags: _Optional[_Iterable[_Union[TagScore, _Mapping]]] = ...) -> None: ...

class Segment(_message.Message):
    __slots__ = ("start_s", "duration_s", "confidence", "loudness_start_db", "loudness_max_db", "loudness_max_time_s", "loudness_end_db", "pitches", "timbre")
    START_S_FIELD_NUMBER: _ClassVar[int]
    DURATION_S_FIELD_NUMBER: _ClassVar[int]
    CONFIDENCE_FIELD_NUMBER: _ClassVar[int]
    LOUDNESS_START_DB_FIELD_NUMBER: _ClassVar[int]
    LOUDNESS_MAX_DB_FIELD_NUMBER: _ClassVar[int]
    LOUDNESS_MAX_TIME_S_FIELD_NUMBER: _ClassVar[int]
    LOUDNESS_END_DB_FIELD_NUMBER: _ClassVar[int]
    PITCHES_FIELD_NUMBER: _ClassVar[int]
    TIMBRE_FIELD_NUMBER: _ClassVar[int]
    start_s: float
    duration_s: float
    confidence: float
    loudness_start_db: float
    loudness_max_db: float
    loudness_max_time_s: float
    loudness_end_db: float
    pitches: _containers.RepeatedScalarFieldContainer[float]
    timbre: _containers.RepeatedScalarFieldContainer[float]
    def __init__(self, start_s: _Optional[float] = ..., duration_s: _Optional[float] = ..., confidence: _Optional[float] = ..., loudness_start_db: _Optional[float] = ..., loudness_max_db: _Optional[float] = ..., loudness_max_time_s: _Optional[float] = ..., loudness_end_db: _Optional[float] = ..., pitches: _Optional[_Iterable[float]] = ..., timbre: _Optional[_Iterable[float]] = ...) -> None: ...

class AudioFeatures(_message.Message):
    __slots__ = ("danceability", "energy", "valence", "acousticness", "instrumentalness", "speechiness", "liveness")
    DANCEABILITY_FIELD_NUMBER: _ClassVar[int]
    ENERGY_FIELD_NUMBER: _ClassVar[int]
    VALENCE_FIELD_NUMBER: _ClassVar[int]
    ACOUSTICNESS_FIELD_NUMBER: _ClassVar[int]
    INSTRUMENTALNESS_FIELD_NUMBER: _ClassVar[int]
    SPEECHINESS_FIELD_NUMBER: _ClassVar[int]
    LIVENESS_FIELD_NUMBER: _ClassVar[int]
    danceability: float
    energy: float
    valence: float
    acousticness: float
    instrumentalness: float
    speechiness: float
    liveness: float
    def __init__(self, danceability: _Optional[float] = ..., energy: _Optional[float] = ..., valence: _Optional[float] = ..., acousticness: _Optional[float] = ..., instrumentalness: _Optional[float] = ..., speechiness: _Optional[float] = ..., liveness: _Optional[float] = ...) -> None: ...

class SpectralDescriptors(_message.Message):
    __slots__ = ("mfcc_mean", "chroma_mean", "spectral_centroid_hz", "spectral_rolloff_hz", "spectral_flux", "spectral_contrast_db", "zero_crossing_rate_hz", "onset_rate_hz", "loudness_range_lu")
    MFCC_MEAN_FIELD_NUMBER: _ClassVar[int]
    CHROMA_MEAN_FIELD_NUMBER: _ClassVar[int]
    SPECTRAL_CENTROID_HZ_FIELD_NUMBER: _ClassVar[int]
    SPECTRAL_ROLLOFF_HZ_FIELD_NUMBER: _ClassVar[int]
    SPECTRAL_FLUX_FIELD_NUMBER: _ClassVar[int]
    SPECTRAL_CONTRAST_DB_FIELD_NUMBER: _ClassVar[int]
    ZERO_CROSSING_RATE_HZ_FIELD_NUMBER: _ClassVar[int]
    ONSET_RATE_HZ_FIELD_NUMBER: _ClassVar[int]
    LOUDNESS_RANGE_LU_FIELD_NUMBER: _ClassVar[int]
    mfcc_mean: _containers.RepeatedScalarFieldContainer[float]
    chroma_mean: _containers.RepeatedScalarFieldContainer[float]
    spectral_centroid_hz: float
    spectral_rolloff_hz: float
    spectral_flux: float
    spectral_contrast_db: _containers.RepeatedScalarFieldContainer[float]
    zero_crossing_rate_hz: float
    onset_rate_hz: float
    loudness_range_lu: float
    def __init__(self, mfcc_mean: _Optional[_Iterable[float]] = ..., chroma_mean: _Optional[_Iterable[float]] = ..., spectral_centroid_hz: _Optional[float] = ..., spectral_rolloff_hz: _Optional[float] = ..., spectral_flux: _Optional[float] = ..., spectral_contrast_db: _Optional[_Iterable[float]] = ..., zero_crossing_rate_hz: _Optional[float] = ..., onset_rate_hz: _Optional[float] = ..., loudness_range_lu: _Optional[float] = ...) -> None: ...

class EvaluationScores(_message.Message):
    __slots__ = ("tonal_clarity", "rhythmic_stability", "dynamic_range", "repetition")
    TONAL_CLARITY_FIELD_NUMBER: _ClassVar[int]
    RHYTHMIC_STABILITY_FIELD_NUMBER: _ClassVar[int]
    DYNAMIC_RANGE_FIELD_NUMBER: _ClassVar[int]
    REPETITION_FIELD_NUMBER: _ClassVar[int]
    tonal_clarity: float
    rhythmic_stability: float
    dynamic_range: float
    repetition: float
    def __init__(self, tonal_clarity: _Optional[float] = ..., rhythmic_stability: _Optional[float] = ..., dynamic_range: _Optional[float] = ..., repetition: _Optional[float] = ...) -> None: ...

class MidiFeatures(_message.Message):
    __slots__ = ("note_count", "note_density_per_s", "lowest_pitch_midi", "highest_pitch_midi", "time_signature_numerator", "time_signature_denominator", "tempo_changes", "track_count", "has_drums", "key_signature", "key_signature_mode")
    NOTE_COUNT_FIELD_NUMBER: _ClassVar[int]
    NOTE_DENSITY_PER_S_FIELD_NUMBER: _ClassVar[int]
    LOWEST_PITCH_MIDI_FIELD_NUMBER: _ClassVar[int]
    HIGHEST_PITCH_MIDI_FIELD_NUMBER: _ClassVar[int]
    TIME_SIGNATURE_NUMERATOR_FIELD_NUMBER: _ClassVar[int]
    TIME_SIGNATURE_DENOMINATOR_FIELD_NUMBER: _ClassVar[int]
    TEMPO_CHANGES_FIELD_NUMBER: _ClassVar[int]
    TRACK_COUNT_FIELD_NUMBER: _ClassVar[int]
    HAS_DRUMS_FIELD_NUMBER: _ClassVar[int]
    KEY_SIGNATURE_FIELD_NUMBER: _ClassVar[int]
    KEY_SIGNATURE_MODE_FIELD_NUMBER: _ClassVar[int]
    note_count: int
    note_density_per_s: float
    lowest_pitch_midi: int
    highest_pitch_midi: int
    time_signature_numerator: int
    time_signature_denominator: int
    tempo_changes: int
    track_count: int
    has_drums: bool
    key_signature: str
    key_signature_mode: Mode
    def __init__(self, note_count: _Optional[int] = ..., note_density_per_s: _Optional[float] = ..., lowest_pitch_midi: _Optional[int] = ..., highest_pitch_midi: _Optional[int] = ..., time_signature_numerator: _Optional[int] = ..., time_signature_denominator: _Optional[int] = ..., tempo_changes: _Optional[int] = ..., track_count: _Optional[int] = ..., has_drums: _Optional[bool] = ..., key_signature: _Optional[str] = ..., key_signature_mode: _Optional[_Union[Mode, str]] = ...) -> None: ...

class BlobRef(_message.Message):
    __slots__ = ("bucket", "name", "size_bytes", "content_type")
    BUCKET_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    SIZE_BYTES_FIELD_NUMBER: _ClassVar[int]
    CONTENT_TYPE_FIELD_NUMBER: _ClassVar[int]
    bucket: str
    name: str
    size_bytes: int
    content_type: str
    def __init__(self, bucket: _Optional[str] = ..., name: _Optional[str] = ..., size_bytes: _Optional[int] = ..., content_type: _Optional[str] = ...) -> None: ...

class Track(_message.Message):
    __slots__ = ("track_id", "state", "title", "filename", "source", "audio_blob", "analysis", "error", "created_at", "updated_at", "generation_id", "tenant", "metadata")
    TRACK_ID_FIELD_NUMBER: _ClassVar[int]
    STATE_FIELD_NUMBER: _ClassVar[int]
    TITLE_FIELD_NUMBER: _ClassVar[int]
    FILENAME_FIELD_NUMBER: _ClassVar[int]
    SOURCE_FIELD_NUMBER: _ClassVar[int]
    AUDIO_BLOB_FIELD_NUMBER: _ClassVar[int]
    ANALYSIS_FIELD_NUMBER: _ClassVar[int]
    ERROR_FIELD_NUMBER: _ClassVar[int]
    CREATED_AT_FIELD_NUMBER: _ClassVar[int]
    UPDATED_AT_FIELD_NUMBER: _ClassVar[int]
    GENERATION_ID_FIELD_NUMBER: _ClassVar[int]
    TENANT_FIELD_NUMBER: _ClassVar[int]
    METADATA_FIELD_NUMBER: _ClassVar[int]
    track_id: str
    state: TrackState
    title: str
    filename: str
    source: TrackSource
    audio_blob: BlobRef
    analysis: TrackAnalysis
    error: str
    created_at: _timestamp_pb2.Timestamp
    updated_at: _timestamp_pb2.Timestamp
    generation_id: str
    tenant: str
    metadata: TrackMetadata
    def __init__(self, track_id: _Optional[str] = ..., state: _Optional[_Union[TrackState, str]] = ..., title: _Optional[str] = ..., filename: _Optional[str] = ..., source: _Optional[_Union[TrackSource, str]] = ..., audio_blob: _Optional[_Union[BlobRef, _Mapping]] = ..., analysis: _Optional[_Union[TrackAnalysis, _Mapping]] = ..., error: _Optional[str] = ..., created_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., updated_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., generation_id: _Optional[str] = ..., tenant: _Optional[str] = ..., metadata: _Optional[_Union[TrackMetadata, _Mapping]] = ...) -> None: ...

class TrackMetadata(_message.Message):
    __slots__ = ("title", "artist", "composer", "album", "year", "genre", "tags", "from_file")
    TITLE_FIELD_NUMBER: _ClassVar[int]
    ARTIST_FIELD_NUMBER: _ClassVar[int]
    COMPOSER_FIELD_NUMBER: _ClassVar[int]
    ALBUM_FIELD_NUMBER: _ClassVar[int]
    YEAR_FIELD_NUMBER: _ClassVar[int]
    GENRE_FIELD_NUMBER: _ClassVar[int]
    TAGS_FIELD_NUMBER: _ClassVar[int]
    FROM_FILE_FIELD_NUMBER: _ClassVar[int]
    title: str
    artist: str
    composer: str
    album: str
    year: int
    genre: str
    tags: _containers.RepeatedScalarFieldContainer[str]
    from_file: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, title: _Optional[str] = ..., artist: _Optional[str] = ..., composer: _Optional[str] = ..., album: _Optional[str] = ..., year: _Optional[int] = ..., genre: _Optional[str] = ..., tags: _Optional[_Iterable[str]] = ..., from_file: _Optional[_Iterable[str]] = ...) -> None: ...

class Interaction(_message.Message):
    __slots__ = ("interaction_id", "listener_id", "track_id", "event", "played_s", "at")
    INTERACTION_ID_FIELD_NUMBER: _ClassVar[int]
    LISTENER_ID_FIELD_NUMBER: _ClassVar[int]
    TRACK_ID_FIELD_NUMBER: _ClassVar[int]
    EVENT_FIELD_NUMBER: _ClassVar[int]
    PLAYED_S_FIELD_NUMBER: _ClassVar[int]
    AT_FIELD_NUMBER: _ClassVar[int]
    interaction_id: str
    listener_id: str
    track_id: str
    event: InteractionType
    played_s: float
    at: _timestamp_pb2.Timestamp
    def __init__(self, interaction_id: _Optional[str] = ..., listener_id: _Optional[str] = ..., track_id: _Optional[str] = ..., event: _Optional[_Union[InteractionType, str]] = ..., played_s: _Optional[float] = ..., at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...

class ApiKey(_message.Message):
    __slots__ = ("key_id", "sha256_hex", "created_at", "revoked_at")
    KEY_ID_FIELD_NUMBER: _ClassVar[int]
    SHA256_HEX_FIELD_NUMBER: _ClassVar[int]
    CREATED_AT_FIELD_NUMBER: _ClassVar[int]
    REVOKED_AT_FIELD_NUMBER: _ClassVar[int]
    key_id: str
    sha256_hex: str
    created_at: _timestamp_pb2.Timestamp
    revoked_at: _timestamp_pb2.Timestamp
    def __init__(self, key_id: _Optional[str] = ..., sha256_hex: _Optional[str] = ..., created_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., revoked_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...

class TenantLimits(_message.Message):
    __slots__ = ("requests_per_s", "burst", "quotas")
    class QuotasEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: float
        def __init__(self, key: _Optional[str] = ..., value: _Optional[float] = ...) -> None: ...
    REQUESTS_PER_S_FIELD_NUMBER: _ClassVar[int]
    BURST_FIELD_NUMBER: _ClassVar[int]
    QUOTAS_FIELD_NUMBER: _ClassVar[int]
    requests_per_s: float
    burst: int
    quotas: _containers.ScalarMap[str, float]
    def __init__(self, requests_per_s: _Optional[float] = ..., burst: _Optional[int] = ..., quotas: _Optional[_Mapping[str, float]] = ...) -> None: ...

class Tenant(_message.Message):
    __slots__ = ("name", "id_salt", "keys", "limits", "created_at", "updated_at")
    NAME_FIELD_NUMBER: _ClassVar[int]
    ID_SALT_FIELD_NUMBER: _ClassVar[int]
    KEYS_FIELD_NUMBER: _ClassVar[int]
    LIMITS_FIELD_NUMBER: _ClassVar[int]
    CREATED_AT_FIELD_NUMBER: _ClassVar[int]
    UPDATED_AT_FIELD_NUMBER: _ClassVar[int]
    name: str
    id_salt: bytes
    keys: _containers.RepeatedCompositeFieldContainer[ApiKey]
    limits: TenantLimits
    created_at: _timestamp_pb2.Timestamp
    updated_at: _timestamp_pb2.Timestamp
    def __init__(self, name: _Optional[str] = ..., id_salt: _Optional[bytes] = ..., keys: _Optional[_Iterable[_Union[ApiKey, _Mapping]]] = ..., limits: _Optional[_Union[TenantLimits, _Mapping]] = ..., created_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., updated_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...

class UsageRecord(_message.Message):
    __slots__ = ("tenant", "day", "audio_seconds", "tracks_stored", "storage_bytes", "generations", "pieces_generated", "tokens_generated", "recorded_at")
    TENANT_FIELD_NUMBER: _ClassVar[int]
    DAY_FIELD_NUMBER: _ClassVar[int]
    AUDIO_SECONDS_FIELD_NUMBER: _ClassVar[int]
    TRACKS_STORED_FIELD_NUMBER: _ClassVar[int]
    STORAGE_BYTES_FIELD_NUMBER: _ClassVar[int]
    GENERATIONS_FIELD_NUMBER: _ClassVar[int]
    PIECES_GENERATED_FIELD_NUMBER: _ClassVar[int]
    TOKENS_GENERATED_FIELD_NUMBER: _ClassVar[int]
    RECORDED_AT_FIELD_NUMBER: _ClassVar[int]
    tenant: str
    day: str
    audio_seconds: float
    tracks_stored: int
    storage_bytes: int
    generations: int
    pieces_generated: int
    tokens_generated: int
    recorded_at: _timestamp_pb2.Timestamp
    def __init__(self, tenant: _Optional[str] = ..., day: _Optional[str] = ..., audio_seconds: _Optional[float] = ..., tracks_stored: _Optional[int] = ..., storage_bytes: _Optional[int] = ..., generations: _Optional[int] = ..., pieces_generated: _Optional[int] = ..., tokens_generated: _Optional[int] = ..., recorded_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...

class Webhook(_message.Message):
    __slots__ = ("webhook_id", "tenant", "url", "events", "secret", "created_at")
    WEBHOOK_ID_FIELD_NUMBER: _ClassVar[int]
    TENANT_FIELD_NUMBER: _ClassVar[int]
    URL_FIELD_NUMBER: _ClassVar[int]
    EVENTS_FIELD_NUMBER: _ClassVar[int]
    SECRET_FIELD_NUMBER: _ClassVar[int]
    CREATED_AT_FIELD_NUMBER: _ClassVar[int]
    webhook_id: str
    tenant: str
    url: str
    events: _containers.RepeatedScalarFieldContainer[str]
    secret: str
    created_at: _timestamp_pb2.Timestamp
    def __init__(self, webhook_id: _Optional[str] = ..., tenant: _Optional[str] = ..., url: _Optional[str] = ..., events: _Optional[_Iterable[str]] = ..., secret: _Optional[str] = ..., created_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...
