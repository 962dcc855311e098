"""Test utterances: Korean spoken by espeak-ng, then put through a phone line with sox."""

from __future__ import annotations

import subprocess
from pathlib import Path


def phone_line(text: str, folder: Path, voice: str = "ko", speed: int = 175) -> Path:
    """``text`` spoken by espeak-ng as a G.711 call delivers it: 8 kHz, telephone band, u-law.

    0.3 s of line noise-free silence before and 0.6 s after, as a caller pauses.
    """
    name = f"{abs(hash((text, voice, speed)))}"
    raw, law, out = folder / f"{name}.tts.wav", folder / f"{name}.law.wav", folder / f"{name}.wav"
    subprocess.run(["espeak-ng", "-v", voice, "-s", str(speed), "-w", str(raw), text], check=True)
    subprocess.run(["sox", str(raw), "-r", "8000", "-c", "1", "-e", "u-law", "-b", "8", str(law),
                    "sinc", "300-3400", "pad", "0.3", "0.6", "norm", "-3"], check=True)
    subprocess.run(["sox", str(law), "-e", "signed-integer", "-b", "16", str(out)], check=True)
    raw.unlink()
    law.unlink()
    return out
