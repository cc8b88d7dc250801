"""The mono mix of a file's channels: where each channel plays, and its gain in the mix.

The analyzer analyses one channel. A mono file is taken as it is and a stereo file as the
mean of its two channels, as always; a file of 3 to :data:`MAX_CHANNELS` channels is mixed
down per ITU-R BS.775-3 (Table 2, the 3/2 to 2/0 downmix) and then mixed to mono as a
stereo file is::

    Lo = L + 0.7071 C + 0.7071 Ls      Ro = R + 0.7071 C + 0.7071 Rs      M = (Lo + Ro) / 2

so that the front channels weigh 0.5, the centre 0.7071 (-3 dB), each surround 0.3536 and
the LFE nothing. This is BS.775's own 3/2 to 1/0 downmix (M = 0.7071 L + 0.7071 R + C +
0.5 Ls + 0.5 Rs) scaled by 1/sqrt(2), the scale at which the mean of a stereo pair is BS.775's
2/0 to 1/0 downmix, so that a 5.1 file and its stereo downmix give the same mono mix. The
gains are not normalised: a mix that adds up past full scale is analysed as it is (the
analysis works in floating point).

Every position has a gain into Lo and Ro (:data:`STEREO_GAINS`):

* front left / right (``FL``, ``FR``) and the front left / right of centre (``FLC``,
  ``FRC``) 1.0 into their side;
* front centre (``FC``) 0.7071 into each side;
* surrounds, side or back (``SL``, ``SR``, ``BL``, ``BR``), 0.7071 into their side, so that a
  7.1 file's back surrounds mix as its side surrounds do;
* back centre (``BC``), a single surround, 0.5 into each side (-3 dB as a surround, -3 dB
  again as it is split);
* height channels (``TFL``, ``TFR``, ``TBL``, ``TBR``; ``TC``, ``TFC``, ``TBC``) as the
  surround below them: 0.7071 into their side, 0.5 into each side when centred;
* the LFE (``LFE``) not at all: BS.775 leaves it out of the downmix (``lfe_gain`` puts it in);
* a channel of unknown position (``"?"``) 0.5 into each side, as a centred surround.

Where each channel plays (:func:`channel_positions`):

* A WAVE_FORMAT_EXTENSIBLE ``dwChannelMask`` (WAV, RF64, Sony Wave64) says it: the channels
  take the positions of the mask's set bits in bit order (:data:`MASK_POSITIONS`, Microsoft's
  ``SPEAKER_*`` constants); channels beyond the mask's bits have no position (``"?"``).
* Otherwise the channel count says it. Ogg (Vorbis and Opus) uses the Vorbis I order (Vorbis I
  specification section 4.3.9, which RFC 7845 section 5.1.1.2 adopts for Opus mapping family 1): L C R
  for 3 channels, and the LFE last for 5.1 and 7.1. Every other container uses the
  SMPTE/ITU order (SMPTE ST 2036-2, ITU-R BS.2051; RFC 9639 section 9.1.3 for FLAC, the
  order of the mask bits for WAV): L R C LFE Ls Rs for 5.1, then the second pair of surrounds
  for 7.1 (L R C LFE Lb Rb Ls Rs in mask order; which pair is "back" makes no difference,
  both have the same gains), as :data:`DEFAULT_POSITIONS` lists. AIFF is read in it too
  (its 1989 orders are not what today's writers use; an AIFF-C ``chan`` chunk is not read),
  and so is FLAC (its ``WAVEFORMATEXTENSIBLE_CHANNEL_MASK`` comment is not read). Channels
  past the eighth have no known position.
* One and two channels are mono and L R whatever the file says.
"""

from __future__ import annotations

import math

import numpy as np

__all__ = [
    "DEFAULT_POSITIONS",
    "MASK_POSITIONS",
    "MAX_CHANNELS",
    "STEREO_GAINS",
    "VORBIS_POSITIONS",
    "channel_positions",
    "mono_gains",
]

#: Most channels a file may have (7.1.4 has 12, a 22.2 mix 24).
MAX_CHANNELS = 32

_G = 1.0 / math.sqrt(2.0)  # -3 dB, 0.7071

#: The positions of the WAVE_FORMAT_EXTENSIBLE ``dwChannelMask`` bits, bit 0 first
#: (``SPEAKER_FRONT_LEFT`` = 0x1 ... ``SPEAKER_TOP_BACK_RIGHT`` = 0x20000).
MASK_POSITIONS: tuple[str, ...] = (
    "FL", "FR", "FC", "LFE", "BL", "BR", "FLC", "FRC", "BC", "SL", "SR",
    "TC", "TFL", "TFC", "TFR", "TBL", "TBC", "TBR",
)

#: Gains of each position into the stereo downmix (Lo, Ro), ITU-R BS.775-3; ``"?"`` is a
#: channel of unknown position. The LFE's are zero (see :func:`mono_gains`'s ``lfe_gain``).
STEREO_GAINS: dict[str, tuple[float, float]] = {
    "FL": (1.0, 0.0), "FR": (0.0, 1.0), "FLC": (1.0, 0.0), "FRC": (0.0, 1.0),
    "FC": (_G, _G),
    "LFE": (0.0, 0.0),
    "SL": (_G, 0.0), "SR": (0.0, _G), "BL": (_G, 0.0), "BR": (0.0, _G),
    "BC": (0.5, 0.5),
    "TFL": (_G, 0.0), "TFR": (0.0, _G), "TBL": (_G, 0.0), "TBR": (0.0, _G),
    "TC": (0.5, 0.5), "TFC": (0.5, 0.5), "TBC": (0.5, 0.5),
    "?": (0.5, 0.5),
}

#: Positions by channel count without a channel mask: the SMPTE/ITU order, as FLAC
#: (RFC 9639 section 9.1.3) and WAV's mask bit order have it.
DEFAULT_POSITIONS: dict[int, tuple[str, ...]] = {
    3: ("FL", "FR", "FC"),
    4: ("FL", "FR", "BL", "BR"),
    5: ("FL", "FR", "FC", "BL", "BR"),
    6: ("FL", "FR", "FC", "LFE", "BL", "BR"),
    7: ("FL", "FR", "FC", "LFE", "BC", "SL", "SR"),
    8: ("FL", "FR", "FC", "LFE", "BL", "BR", "SL", "SR"),
}

#: Positions by channel count in Ogg Vorbis and Opus (Vorbis I section 4.3.9).
VORBIS_POSITIONS: dict[int, tuple[str, ...]] = {
    3: ("FL", "FC", "FR"),
    4: ("FL", "FR", "BL", "BR"),
    5: ("FL", "FC", "FR", "BL", "BR"),
    6: ("FL", "FC", "FR", "BL", "BR", "LFE"),
    7: ("FL", "FC", "FR", "SL", "SR", "BC", "LFE"),
    8: ("FL", "FC", "FR", "SL", "SR", "BL", "BR", "LFE"),
}


def channel_positions(channels: int, *, container: str = "wav", channel_mask: int | None = None) -> tuple[str, ...]:
    """Where each channel of a file plays, as keys of :data:`STEREO_GAINS`.

    Parameters
    ----------
    channels : int in [1, MAX_CHANNELS]
    container : str
        The sniffed container (:data:`musicaas_analyzer.decode.SUPPORTED_FORMATS`); ``"ogg"``
        has the Vorbis order, every other the SMPTE/ITU order.
    channel_mask : int or None
        The WAVE_FORMAT_EXTENSIBLE ``dwChannelMask``; None or 0 when the file has none.

    Returns
    -------
    tuple of str [length=channels]
        ``("M",)`` for one channel, ``("FL", "FR")`` for two.
    """
    if not 1 <= channels <= MAX_CHANNELS:
        raise ValueError(f"channels must be in [1, {MAX_CHANNELS}], got {channels}")
    if channels == 1:
        return ("M",)
    if channels == 2:
        return ("FL", "FR")
    if channel_mask:
        named = [p for bit, p in enumerate(MASK_POSITIONS) if channel_mask >> bit & 1]
    else:
        table = VORBIS_POSITIONS if container == "ogg" else DEFAULT_POSITIONS
        named = list(table.get(min(channels, 8), DEFAULT_POSITIONS[8]))
    named = named[:channels]
    return tuple(named + ["?"] * (channels - len(named)))


def mono_gains(positions: tuple[str, ...], *, lfe_gain: float = 0.0) -> np.ndarray:
    """The gain of each channel in the mono mix, ``(Lo + Ro) / 2`` of the BS.775 downmix.

    Parameters
    ----------
    positions : tuple of str
        From :func:`channel_positions`.
    lfe_gain : float >= 0
        The LFE's gain into each of Lo and Ro; 0 (BS.775: the LFE is left out).

    Returns
    -------
    np.ndarray [shape=(channels,)], float32
        ``[1.0]`` for mono, ``[0.5, 0.5]`` for stereo; for 5.1 in SMPTE order
        ``[0.5, 0.5, 0.7071, 0, 0.3536, 0.3536]``.
    """
    if positions == ("M",):
        return np.ones(1, dtype=np.float32)
    gains = []
    for p in positions:
        lo, ro = (lfe_gain, lfe_gain) if p == "LFE" else STEREO_GAINS[p]
        gains.append(0.5 * (lo + ro))
    return np.asarray(gains, dtype=np.float32)
