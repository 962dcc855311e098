"""An English speech-menu test corpus cut from human recordings: Asterisk's English core sounds.

The sandbox's Asterisk (scripts/asterisk-sandbox) installs Debian's
``asterisk-core-sounds-en-wav``: one woman's recordings at 8 kHz of digits,
letters, words and prompts. Nothing is downloaded; the corpus is made from
that folder at bench/test time.

Two menus, each with its own in-menu and off-menu utterances:

* ``words``: a phone-features menu whose ten phrases are whole recordings
  (call forwarding, call waiting, do not disturb, speed dial, ...);
* ``digits``: say a digit (one ... nine, zero or oh).

Off-menu utterances are every other recording of at most ``OFF_MAX_SECONDS``
(callers answer briefly), except tones, silence and recordings that say a menu
phrase (or, for digits, a number or a homophone such as "for").

Conditions, as a call delivers them to ivr:

* ``clean``: the 8 kHz recording as it is (what a slin call carries);
* ``phone``: through G.711 u-law and back (a narrowband phone call);
* ``phone-noise20``: white noise at 20 dB SNR added, then u-law.

Each is padded with 0.3 s of silence before and 0.6 s after, like the Korean
corpus (bench/speech_corpus.py). Cached in ``/var/cache/ivr/speech-corpus-en``.

    .venv/bin/python bench/speech_corpus_en.py [--sounds DIR] [--out DIR]
"""

from __future__ import annotations

import argparse
import array
import hashlib
import json
import random
import subprocess
import sys
import tempfile
import wave
from dataclasses import asdict, dataclass
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from speech_corpus import add_noise, write_wav  # noqa: E402

DEFAULT_SOUNDS = Path("/var/cache/ivr/asterisk-sandbox/usr/share/asterisk/sounds/en_US_f_Allison")
DEFAULT_OUT = Path("/var/cache/ivr/speech-corpus-en")

#: Menu name -> option key -> (phrases, recordings saying the first phrase).
MENUS: dict[str, dict[str, tuple[list[str], list[str]]]] = {
    "words": {
        "1": (["call forwarding"], ["call-forwarding"]),
        "2": (["call waiting"], ["call-waiting"]),
        "3": (["do not disturb"], ["do-not-disturb"]),
        "4": (["speed dial"], ["speed-dial"]),
        "5": (["telephone number"], ["telephone-number"]),
        "6": (["extension"], ["extension"]),
        "7": (["location"], ["location"]),
        "8": (["goodbye"], ["goodbye"]),
        "9": (["hello"], ["hello"]),
        "0": (["time"], ["time"]),
    },
    "digits": {
        **{str(n): ([word], [f"digits/{n}"]) for n, word in enumerate(
            ["zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine"]) if n},
        "0": (["zero", "oh"], ["digits/0", "digits/oh"]),
    },
}

#: Longest off-menu recording used, in seconds.
OFF_MAX_SECONDS = 3.0
#: Never off-menu: tones, silence, symbols read out, and our own generated prompts.
_NOT_SPEECH = ("silence/", "beep", "ascending-2tone", "descending-2tone", "letters/ascii",
               "confbridge-join", "confbridge-leave.", "ivr-")
#: Recordings that say a menu's phrase inside a longer one (ambiguous, so in neither set).
_SAYS_PHRASE: dict[str, tuple[str, ...]] = {
    "words": ("call-fwd-", "speed-dial-", "vm-goodbye", "vm-extension", "to-extension", "agent-newlocation",
              "hello-world", "at-tone-time", "call-forwarding", "call-waiting", "do-not-disturb",
              "telephone-number", "extension", "location", "goodbye", "hello", "time", "pbx-transfer"),
    # a number, a recording whose name has a digit (press 1 ...), and homophones of digits
    "digits": ("digits/", "letters/o", "for.", "vm-for.", "one-moment-please", "phonetic/9_p", "vm-onefor"),
}

CONDITIONS: dict[str, dict[str, object]] = {
    "clean": {"ulaw": False, "snr": None},
    "phone": {"ulaw": True, "snr": None},
    "phone-noise20": {"ulaw": True, "snr": 20.0},
}

LEAD_SILENCE = 0.3
TAIL_SILENCE = 0.6


@dataclass(frozen=True, slots=True)
class Utterance:
    path: str            # relative to the corpus folder
    source: str          # the recording, relative to the sounds folder, without .wav
    menu: str
    expected: str | None  # option key, or None for off-menu speech
    condition: str
    rate: int = 8000


def _off_menu(menu: str, name: str) -> bool:
    if any(name.startswith(p) or f"/{p}" in f"/{name}" for p in _NOT_SPEECH):
        return False
    if menu == "digits" and any(ch.isdigit() for ch in name.replace("day-", "").replace("mon-", "")):
        return False
    return not any(name.startswith(p) or name.split("/")[-1].startswith(p) for p in _SAYS_PHRASE[menu])


def _duration(path: Path) -> float:
    with wave.open(str(path), "rb") as reader:
        return reader.getnframes() / reader.getframerate()


def plan(sounds: Path) -> list[Utterance]:
    """Every utterance of the corpus, from the recordings found in ``sounds``."""
    if not (sounds / "digits" / "1.wav").is_file():
        raise SystemExit(f"no Asterisk English core sounds in {sounds}: run scripts/asterisk-sandbox start "
                         "(it installs asterisk-core-sounds-en-wav), or pass --sounds")
    names = sorted(str(p.relative_to(sounds))[:-4] for p in sounds.rglob("*.wav"))
    items: list[tuple[str, str, str | None]] = []
    for menu, options in MENUS.items():
        used = set()
        for key, (_phrases, recordings) in options.items():
            for name in recordings:
                items.append((menu, name, key))
                used.add(name)
        for name in names:
            short = _duration(sounds / f"{name}.wav") <= OFF_MAX_SECONDS
            if name not in used and short and _off_menu(menu, name):
                items.append((menu, name, None))
    out: list[Utterance] = []
    for condition in CONDITIONS:
        for menu, name, key in items:
            tag = "in" if key else "off"
            out.append(Utterance(f"{condition}/{menu}-{tag}-{name.replace('/', '_')}.wav", name, menu, key,
                                 condition))
    return out


def _fingerprint(utterances: list[Utterance]) -> str:
    blob = json.dumps([[asdict(u) for u in utterances], CONDITIONS, LEAD_SILENCE, TAIL_SILENCE, 1])
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


def make(sounds: Path, utterance: Utterance, out: Path) -> None:
    """One utterance: the recording padded, maybe noisy, maybe through u-law, as 16-bit 8 kHz WAV."""
    settings = CONDITIONS[utterance.condition]
    with tempfile.TemporaryDirectory() as tmp:
        padded = Path(tmp) / "padded.wav"
        subprocess.run(["sox", str(sounds / f"{utterance.source}.wav"), "-r", "8000", "-c", "1", "-e",
                        "signed-integer", "-b", "16", str(padded),
                        "pad", str(LEAD_SILENCE), str(TAIL_SILENCE)], check=True, capture_output=True)
        with wave.open(str(padded), "rb") as reader:
            samples = array.array("h", reader.readframes(reader.getnframes()))
        if settings["snr"] is not None:
            seed = int(hashlib.sha256(utterance.path.encode()).hexdigest()[:8], 16)
            add_noise(samples, float(settings["snr"]), random.Random(seed))  # type: ignore[arg-type]
        write_wav(padded, samples, 8000)
        target = out / utterance.path
        if settings["ulaw"]:
            law = Path(tmp) / "line.wav"
            subprocess.run(["sox", str(padded), "-e", "u-law", "-b", "8", str(law)], check=True,
                           capture_output=True)
            subprocess.run(["sox", str(law), "-e", "signed-integer", "-b", "16", str(target)], check=True,
                           capture_output=True)
        else:
            padded.replace(target)


def build(out: Path = DEFAULT_OUT, sounds: Path = DEFAULT_SOUNDS) -> list[Utterance]:
    """Make the corpus in ``out`` (or reuse it when nothing changed); return its index."""
    utterances = plan(sounds)
    fingerprint = _fingerprint(utterances)
    index_path = out / "corpus.json"
    if index_path.exists() and json.loads(index_path.read_text()).get("fingerprint") == fingerprint:
        return utterances
    for condition in CONDITIONS:
        (out / condition).mkdir(parents=True, exist_ok=True)
    for utterance in utterances:
        make(sounds, utterance, out)
    menus = {menu: {key: phrases for key, (phrases, _) in options.items()} for menu, options in MENUS.items()}
    index_path.write_text(json.dumps({"fingerprint": fingerprint, "menus": menus,
                                      "utterances": [asdict(u) for u in utterances]}, indent=1))
    return utterances


def menu_phrases(menu: str) -> dict[str, list[str]]:
    """A menu's options as a :class:`~ivr.speech.grammar.SpeechGrammar` takes them."""
    return {key: phrases for key, (phrases, _) in MENUS[menu].items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--sounds", type=Path, default=DEFAULT_SOUNDS, help="Asterisk's en sounds folder")
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT,
                        help=f"corpus folder (default {DEFAULT_OUT})")
    args = parser.parse_args()
    utterances = build(args.out, args.sounds)
    for menu in MENUS:
        ins = sum(1 for u in utterances if u.menu == menu and u.expected and u.condition == "clean")
        offs = sum(1 for u in utterances if u.menu == menu and not u.expected and u.condition == "clean")
        print(f"{menu}: {ins} in-menu, {offs} off-menu recordings x {len(CONDITIONS)} conditions")
    print(f"{len(utterances)} utterances in {args.out}")


if __name__ == "__main__":
    main()
