"""Test utterances as a phone line carries them: Korean by espeak-ng, and Asterisk's human English."""

from __future__ import annotations

import subprocess
from pathlib import Path


def phone_line(text: str, folder: Path, voice: str = "ko", speed: int = 175) -> Path:
    """``text`` spoken by espeak-ng as a G.711 call delivers it: 8 kHz, telephone band, u-law.

    0.3 s of line noise-free silence before and 0.6 s after, as a caller pauses. No dither
    (``sox -D``), so a test hears the same samples on every run.
    """
    name = f"{abs(hash((text, voice, speed)))}"
    raw, law, out = folder / f"{name}.tts.wav", folder / f"{name}.law.wav", folder / f"{name}.wav"
    subprocess.run(["espeak-ng", "-v", voice, "-s", str(speed), "-w", str(raw), text], check=True)
    subprocess.run(["sox", "-D", str(raw), "-r", "8000", "-c", "1", "-e", "u-law", "-b", "8", str(law),
                    "sinc", "300-3400", "pad", "0.3", "0.6", "norm", "-3"], check=True)
    subprocess.run(["sox", str(law), "-e", "signed-integer", "-b", "16", str(out)], check=True)
    raw.unlink()
    law.unlink()
    return out


def sandbox_sounds() -> Path:
    """Asterisk's English core sounds (human recordings, 8 kHz) in the scripts/asterisk-sandbox folder."""
    script = Path(__file__).resolve().parent.parent / "scripts" / "asterisk-sandbox"
    root = subprocess.run([str(script), "path"], check=True, capture_output=True, text=True).stdout.strip()
    folder = Path(root) / "usr/share/asterisk/sounds/en_US_f_Allison"
    if not (folder / "digits" / "1.wav").is_file():
        raise RuntimeError(f"no Asterisk English sounds in {folder}: run scripts/asterisk-sandbox start once")
    return folder


def human_line(recording: str, folder: Path, rate: int = 8000, ulaw: bool = True) -> Path:
    """A human English recording of the sandbox (e.g. ``digits/7``) as a call delivers it.

    Without dither (``sox -D``): sox's default dither is random, so the same
    recording decoded near a decision boundary would flip between runs.

    Padded with 0.3 s of silence before and 0.6 s after; ``ulaw`` sends it
    through G.711 u-law and back (a narrowband call); ``rate`` 16000 gives
    what a wideband (slin16) AudioSocket carries.
    """
    source = sandbox_sounds() / f"{recording}.wav"
    name = recording.replace("/", "_")
    law, out = folder / f"{name}.law.wav", folder / f"{name}-{rate}{'-ulaw' if ulaw else ''}.wav"
    padded = folder / f"{name}.padded.wav"
    subprocess.run(["sox", "-D", str(source), "-r", str(rate), "-e", "signed-integer", "-b", "16",
                    str(padded), "pad", "0.3", "0.6"], check=True)
    if ulaw:
        subprocess.run(["sox", "-D", str(padded), "-e", "u-law", "-b", "8", str(law)], check=True)
        subprocess.run(["sox", str(law), "-e", "signed-integer", "-b", "16", str(out)], check=True)
        law.unlink()
        padded.unlink()
    else:
        padded.replace(out)
    return out


def wideband_line(text: str, folder: Path, voice: str = "en-us", speed: int = 175) -> Path:
    """``text`` spoken by espeak-ng at 16 kHz (the whole band a G.722 call carries), as Asterisk's
    16 kHz WAV (``.wav16``); padded like :func:`phone_line`."""
    name = f"wb{abs(hash((text, voice, speed)))}"
    raw, out = folder / f"{name}.tts.wav", folder / f"{name}.wav16"
    subprocess.run(["espeak-ng", "-v", voice, "-s", str(speed), "-w", str(raw), text], check=True)
    subprocess.run(["sox", str(raw), "-t", "wav", "-r", "16000", "-c", "1", "-e", "signed-integer",
                    "-b", "16", str(out), "pad", "0.3", "0.6", "norm", "-3"], check=True)
    raw.unlink()
    return out
