"""Generate a Korean speech-menu test corpus with espeak-ng, as a phone line would deliver it.

Every utterance is spoken by ``espeak-ng -v ko`` in several voice variants,
speeds and pitches, padded with the silence a caller leaves around an answer,
then turned into what a call delivers:

* ``phone``: 8 kHz, band-limited to 300-3400 Hz and passed through G.711 u-law
  (encoded and decoded again), which is what a narrowband call gives AudioSocket;
* ``phone-noise20`` / ``phone-noise10``: the same with white noise added at
  20 dB and 10 dB signal-to-noise ratio (a busy room, a bad line);
* ``wide``: 16 kHz, 50-7000 Hz, for wideband (slin16) channels.

In-menu utterances are the menu's phrases and synonyms; off-menu ones are
other Korean sentences a caller might say instead (including a few close to
menu words). The corpus goes to a cache folder outside the repository
(``/var/cache/ivr/speech-corpus`` by default) with a ``corpus.json`` index;
it is rebuilt only when this file's settings change.

    taskset -c 1 .venv/bin/python bench/speech_corpus.py [--out DIR]
"""

from __future__ import annotations

import argparse
import array
import hashlib
import json
import math
import random
import subprocess
import sys
import tempfile
import wave
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass
from pathlib import Path

DEFAULT_OUT = Path("/var/cache/ivr/speech-corpus")

#: The benchmark menu: option key -> phrases (the first is the one the prompt says).
MENU: dict[str, list[str]] = {
    "1": ["상담원", "상담원 연결", "직원"],   # agent
    "2": ["수리", "수리 접수", "고장 신고"],  # repair
    "3": ["예약", "예약 확인"],              # booking
    "4": ["잔액", "잔액 조회", "잔고"],       # balance
}

#: Things callers say that are not on the menu; the last few sound close to menu words.
OFF_MENU: list[str] = [
    "오늘 날씨가 정말 좋네요",
    "비밀번호를 잊어버렸어요",
    "카드를 분실했어요",
    "환불하고 싶어요",
    "배송은 언제 오나요",
    "주문을 취소해 주세요",
    "영업시간이 어떻게 되나요",
    "주소를 바꾸고 싶어요",
    "요금 납부",
    "회원 가입",
    "안녕하세요",
    "여보세요",
    "잘 모르겠어요",
    "다시 말씀해 주세요",
    "포인트 적립",
    "계좌 이체",
    "인터넷이 안 돼요",
    "해지하고 싶어요",
    "소리가 안 들려요",   # 소리 ~ 수리
    "계약서",             # 계약 ~ 예약
    "잔치",               # 잔치 ~ 잔고/잔액
    "사람",
]

#: (voice, words per minute, pitch): espeak-ng's Korean voice and some variants.
VOICES: list[tuple[str, int, int]] = [
    ("ko", 175, 50),
    ("ko", 140, 35),
    ("ko", 210, 65),
    ("ko+f2", 160, 60),
    ("ko+m3", 190, 40),
    ("ko+f4", 150, 75),
]

CONDITIONS: dict[str, dict[str, object]] = {
    "phone": {"rate": 8000, "band": (300, 3400), "ulaw": True, "snr": None},
    "phone-noise20": {"rate": 8000, "band": (300, 3400), "ulaw": True, "snr": 20.0},
    "phone-noise10": {"rate": 8000, "band": (300, 3400), "ulaw": True, "snr": 10.0},
    "wide": {"rate": 16000, "band": (50, 7000), "ulaw": False, "snr": None},
}

LEAD_SILENCE = 0.3
TAIL_SILENCE = 0.6


@dataclass(frozen=True, slots=True)
class Utterance:
    path: str           # relative to the corpus folder
    text: str
    expected: str | None  # option key, or None for off-menu speech
    voice: str
    speed: int
    pitch: int
    condition: str
    rate: int


def _fingerprint() -> str:
    blob = json.dumps([MENU, OFF_MENU, VOICES, CONDITIONS, LEAD_SILENCE, TAIL_SILENCE, 2],
                      ensure_ascii=False, default=str)
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


def speak(text: str, voice: str, speed: int, pitch: int, out: Path, rate: int,
          band: tuple[int, int], ulaw: bool, snr: float | None, seed: int) -> None:
    """``text`` spoken into ``out``: 16-bit mono WAV at ``rate`` Hz, band-limited, maybe noisy."""
    with tempfile.TemporaryDirectory() as tmp:
        raw = Path(tmp) / "tts.wav"
        subprocess.run(["espeak-ng", "-v", voice, "-s", str(speed), "-p", str(pitch), "-w", str(raw), text],
                       check=True, capture_output=True)
        shaped = Path(tmp) / "shaped.wav"
        low, high = band
        effects = ["sinc", f"{low}-{high}", "pad", str(LEAD_SILENCE), str(TAIL_SILENCE), "norm", "-3"]
        if ulaw:
            law = Path(tmp) / "line.wav"
            subprocess.run(["sox", str(raw), "-r", str(rate), "-c", "1", "-e", "u-law", "-b", "8", str(law),
                            *effects], check=True, capture_output=True)
            subprocess.run(["sox", str(law), "-e", "signed-integer", "-b", "16", str(shaped)],
                           check=True, capture_output=True)
        else:
            subprocess.run(["sox", str(raw), "-r", str(rate), "-c", "1", "-e", "signed-integer", "-b", "16",
                            str(shaped), *effects], check=True, capture_output=True)
        with wave.open(str(shaped), "rb") as reader:
            samples = array.array("h", reader.readframes(reader.getnframes()))
        if sys.byteorder != "little":
            samples.byteswap()
        if snr is not None:
            add_noise(samples, snr, random.Random(seed))
        write_wav(out, samples, rate)


def add_noise(samples: array.array[int], snr_db: float, rng: random.Random) -> None:
    """Add white noise at ``snr_db`` below the speech power (measured over the loud part)."""
    loud = [s for s in samples if abs(s) > 300] or [1]
    power = sum(s * s for s in loud) / len(loud)
    sigma = math.sqrt(power / (10 ** (snr_db / 10)))
    for index, value in enumerate(samples):
        samples[index] = max(-32768, min(32767, int(value + rng.gauss(0.0, sigma))))


def write_wav(path: Path, samples: array.array[int], rate: int) -> None:
    data = samples.tobytes() if sys.byteorder == "little" else _swapped(samples)
    with wave.open(str(path), "wb") as writer:
        writer.setnchannels(1)
        writer.setsampwidth(2)
        writer.setframerate(rate)
        writer.writeframes(data)


def _swapped(samples: array.array[int]) -> bytes:
    copy = array.array("h", samples)
    copy.byteswap()
    return copy.tobytes()


def plan() -> list[tuple[Utterance, dict[str, object]]]:
    items: list[tuple[Utterance, dict[str, object]]] = []
    texts: list[tuple[str, str | None]] = [(p, key) for key, phrases in MENU.items() for p in phrases]
    texts += [(sentence, None) for sentence in OFF_MENU]
    for condition, settings in CONDITIONS.items():
        for voice, speed, pitch in VOICES:
            for number, (text, expected) in enumerate(texts):
                tag = "in" if expected else "off"
                name = f"{condition}/{voice.replace('+', '-')}-{speed}-{pitch}-{tag}{number:02d}.wav"
                items.append((Utterance(name, text, expected, voice, speed, pitch, condition,
                                        int(settings["rate"])), settings))  # type: ignore[call-overload]
    return items


def build(out: Path, jobs: int = 1) -> list[Utterance]:
    """Make the corpus in ``out`` (or reuse it when nothing changed); return its index."""
    index_path = out / "corpus.json"
    fingerprint = _fingerprint()
    if index_path.exists():
        index = json.loads(index_path.read_text())
        if index.get("fingerprint") == fingerprint:
            return [Utterance(**u) for u in index["utterances"]]
    items = plan()
    for condition in CONDITIONS:
        (out / condition).mkdir(parents=True, exist_ok=True)

    def make(item: tuple[Utterance, dict[str, object]]) -> None:
        utterance, settings = item
        seed = int(hashlib.sha256(utterance.path.encode()).hexdigest()[:8], 16)
        speak(utterance.text, utterance.voice, utterance.speed, utterance.pitch, out / utterance.path,
              utterance.rate, settings["band"], bool(settings["ulaw"]),  # type: ignore[arg-type]
              settings["snr"], seed)  # type: ignore[arg-type]

    with ThreadPoolExecutor(max_workers=jobs) as pool:
        list(pool.map(make, items))
    utterances = [u for u, _ in items]
    index_path.write_text(json.dumps({"fingerprint": fingerprint, "menu": MENU,
                                      "utterances": [asdict(u) for u in utterances]},
                                     ensure_ascii=False, indent=1))
    return utterances


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT,
                        help=f"corpus folder (default {DEFAULT_OUT})")
    parser.add_argument("--jobs", type=int, default=2, help="espeak-ng/sox processes at once")
    args = parser.parse_args()
    utterances = build(args.out, args.jobs)
    in_menu = sum(1 for u in utterances if u.expected)
    print(f"{len(utterances)} utterances ({in_menu} in-menu, {len(utterances) - in_menu} off-menu) "
          f"in {args.out}")


if __name__ == "__main__":
    main()
