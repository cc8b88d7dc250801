"""The descriptive metadata of an upload (``UploadMetadata`` -> ``TrackMetadata``), checked.

The rules are :mod:`musicaas.metadata`'s (shared with the analyzer, which completes the
empty fields from the file's own tags): title, artist, composer, album and genre at most
512 characters after trimming and no control characters; year 0 or 1 to 9999; at most 32
tags of 1 to 64 characters, lower-cased and de-duplicated. A value out of bounds answers
INVALID_ARGUMENT naming the field (``metadata.artist``, ``metadata.tags[3]``), quoting at
most a few dozen characters of it. The caller's text goes into the track record and the
``tracks.uploaded`` event only (protobuf fields), never into a log line, subject or key.
"""

from __future__ import annotations

from musicaas import metadata as md
from musicaas.common.v1 import common_pb2
from musicaas.gateway.v1 import gateway_pb2

#: Prefix of the field names in error messages: the upload's first message.
FIELD_PREFIX = "metadata"


def upload_metadata(meta: gateway_pb2.UploadMetadata) -> common_pb2.TrackMetadata:
    """The checked descriptive fields of an upload's metadata message.

    Parameters
    ----------
    meta : gateway_pb2.UploadMetadata
        The first message of ``UploadTrack``; ``filename`` and ``content_type`` are not read
        here (the servicer checks them with :mod:`musicaas.runtime.validation`).

    Returns
    -------
    common_pb2.TrackMetadata
        ``title``, ``artist``, ``composer``, ``album``, ``genre`` trimmed; ``year``; ``tags``
        folded and de-duplicated; ``from_file`` empty (the analyzer fills it).

    Raises
    ------
    InvalidArgument
        For the first field out of bounds, named ``metadata.<field>``.
    """
    return md.check_metadata(meta, prefix=FIELD_PREFIX)
