"""Which rate a speech turn listens at, and how Asterisk is asked for it.

Asterisk's ``AudioSocket()`` application sets the channel to ``slin`` (8 kHz)
whatever the call carries (apps/app_audiosocket.c, ``audiosocket_exec``, 22.10),
so a G.722 or Opus caller loses half the band before the recogniser hears it.
The AudioSocket *channel driver* takes a codec instead: ``Dial(AudioSocket/
<host>:<port>/<uuid>/c(slin16))`` makes a channel whose only format is slin16
(channels/chan_audiosocket.c, ``audiosocket_request``), the bridge Dial builds
transcodes the caller's G.722 straight to it, and res_audiosocket sends kind
0x12 frames. A call whose codec is narrowband keeps the application and 8 kHz:
widening G.711 adds nothing but bytes.
"""

from __future__ import annotations

import array
import uuid

__all__ = ["NARROW", "WIDE", "audiosocket_dial", "call_rate", "double_rate"]

NARROW = 8000
WIDE = 16000

#: Asterisk format names (``core show codecs``) whose audio is at 16 kHz or more.
_WIDEBAND_FORMATS = frozenset({
    "g722", "siren7", "siren14", "speex16", "speex32", "silk16", "silk24", "opus", "celt", "g719",
    "slin16", "slin24", "slin32", "slin44", "slin48", "slin96", "slin192",
    "testlaw16",
})


def call_rate(native_formats: str | None) -> int:
    """16000 when the channel's first (negotiated) audio format is wideband, else 8000.

    ``native_formats`` is ``CHANNEL(audionativeformat)``: Asterisk's format
    names in preference order, e.g. ``(g722|ulaw)``. Asterisk sends and
    receives the first, so only it counts.
    """
    if not native_formats:
        return NARROW
    first = native_formats.strip().strip("()").split("|")[0].strip().lower()
    return WIDE if first in _WIDEBAND_FORMATS else NARROW


def audiosocket_dial(host: str, port: int, ident: uuid.UUID, rate: int) -> str:
    """The Dial target for an AudioSocket channel carrying signed linear at ``rate`` Hz."""
    codec = {NARROW: "slin", WIDE: "slin16"}.get(rate)
    if codec is None:
        raise ValueError(f"no AudioSocket codec for {rate} Hz")
    return f"AudioSocket/{host}:{port}/{ident}/c({codec})"


def double_rate(pcm: bytes) -> bytes:
    """16-bit mono PCM at twice its rate: each new sample halfway between its neighbours.

    For 8 kHz prompts streamed to a 16 kHz AudioSocket: Asterisk would accept
    8 kHz frames too, but would then change the channel's translation path
    mid-turn.
    """
    samples = array.array("h", pcm)
    if not samples:
        return b""
    wide = array.array("h", bytes(len(samples) * 4))
    wide[0::2] = samples
    following = samples[1:]
    following.append(samples[-1])
    wide[1::2] = array.array("h", [(a + b) >> 1 for a, b in zip(samples, following, strict=True)])
    return wide.tobytes()
