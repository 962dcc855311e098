"""Energy-based voice activity detection: when a caller starts and stops speaking.

Barge-in must stop the prompt within a frame or two, whatever the decoder's
backlog, so this runs on the reactor thread on each 20 ms frame: an RMS level
against a noise floor that follows the line's background. It costs a few
microseconds per frame (one pass over 160 samples), far less than decoding.
Speech starts after ``start_frames`` loud frames in a row and ends after
``end_seconds`` of quiet; both are counted in audio time, not wall time, so
the decision is the same however the audio is delivered.
"""

from __future__ import annotations

import array
import math
import operator
import sys
from dataclasses import dataclass

__all__ = ["EnergyVAD", "VADSettings"]


@dataclass(frozen=True, slots=True)
class VADSettings:
    #: Speech must be this many dB over the noise floor.
    margin_db: float = 9.0
    #: ... and at least this loud (dBFS), so a silent line's dither is never speech.
    min_level_db: float = -45.0
    #: Loud 20 ms frames in a row that make speech (60 ms: a click is not speech).
    start_frames: int = 3
    #: Seconds of quiet after speech that end the utterance.
    end_seconds: float = 0.6
    #: ... or that end it sooner when what was heard so far is already one whole menu phrase
    #: (a pause inside a two-word phrase is rarely this long and would not match yet).
    early_end_seconds: float = 0.25
    #: Longest utterance in seconds; a caller who never stops is cut here.
    max_seconds: float = 8.0
    #: How fast the floor rises towards louder background (per frame); it falls at once.
    floor_rise: float = 0.02


class EnergyVAD:
    """Feed 16-bit little-endian mono PCM; read :attr:`started` and :attr:`ended`."""

    def __init__(self, sample_rate: int, settings: VADSettings = VADSettings()) -> None:
        self.sample_rate = sample_rate
        self.settings = settings
        self._frame = int(sample_rate * 0.02) * 2
        self._pending = b""
        self._floor_db = -60.0
        self._loud_run = 0
        self._quiet_run = 0
        self._frames = 0
        #: Frames fed up to the end of the last loud frame after speech started.
        self._loud_end = 0
        #: Audio seconds (from the first frame fed) when speech started / ended, or None.
        self.started: float | None = None
        self.ended: float | None = None

    @property
    def seconds(self) -> float:
        """Audio fed so far, in seconds."""
        return self._frames * 0.02

    @property
    def quiet_seconds(self) -> float:
        """Seconds of quiet since the caller last spoke (0 while they talk or before they start)."""
        return self._quiet_run * 0.02 if self.started is not None else 0.0

    @property
    def quiet_since(self) -> float | None:
        """Audio seconds when the current quiet began (the end of the last loud frame), None before
        speech: the same value for the whole of one pause, so a pause is told from the next."""
        return self._loud_end * 0.02 if self.started is not None else None

    def feed(self, pcm: bytes) -> None:
        data = self._pending + pcm if self._pending else pcm
        size = self._frame
        usable = len(data) - len(data) % size
        for offset in range(0, usable, size):
            self._step(data[offset:offset + size])
        self._pending = data[usable:]

    def _step(self, frame: bytes) -> None:
        self._frames += 1
        if self.ended is not None:
            return
        samples = array.array("h", frame)
        if sys.byteorder != "little":
            samples.byteswap()
        power = sum(map(operator.mul, samples, samples)) / len(samples)
        level = 10 * math.log10(power / (32768.0 * 32768.0)) if power > 0 else -100.0
        settings = self.settings
        if self._frames == 1:
            # Start from the line's background, unless the caller is already talking.
            self._floor_db = min(level, -50.0)
        loud = level > max(settings.min_level_db, self._floor_db + settings.margin_db)
        if not loud:
            # Follow the background: down at once, up slowly (speech must not raise it fast).
            if level < self._floor_db:
                self._floor_db = level
            else:
                self._floor_db += (level - self._floor_db) * settings.floor_rise
        if self.started is None:
            self._loud_run = self._loud_run + 1 if loud else 0
            if self._loud_run >= settings.start_frames:
                self.started = (self._frames - settings.start_frames) * 0.02
                self._loud_end = self._frames
            return
        self._quiet_run = 0 if loud else self._quiet_run + 1
        if loud:
            self._loud_end = self._frames
        now = self._frames * 0.02
        if self._quiet_run * 0.02 >= settings.end_seconds:
            self.ended = now - self._quiet_run * 0.02
        elif now - self.started >= settings.max_seconds:
            self.ended = now
