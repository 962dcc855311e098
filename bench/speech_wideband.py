"""Wideband against narrowband speech turns: pocketsphinx accuracy and CPU, 8 kHz u-law against 16 kHz G.722.

A G.722 caller reaches the recogniser at 16 kHz (an AudioSocket channel
Dialled with ``c(slin16)``, ivr/speech/wideband.py), a G.711 caller at 8 kHz
(the ``AudioSocket()`` application; pocketsphinx then interpolates to 16 kHz).
Two English sets, decoded with the server's defaults (``garbage_penalty`` 4,
``confirm_penalty`` 10), each in both conditions:

* ``human``: Asterisk's recordings (bench/speech_corpus_en.py, both menus, in-
  and off-menu). They are 8 kHz recordings, so their G.722 version is the
  recording resampled to 16 kHz: nothing above 4 kHz. That is what a
  narrowband source (a PSTN caller reaching us over a wideband trunk) gives;
  it cannot say what a wideband voice gains;
* ``espeak``: the menus' phrases (in-menu) and short sentences (off-menu) said
  by espeak-ng in four English voices at 16 kHz: a wideband source. The u-law
  version is that audio band-limited to 300-3400 Hz at 8 kHz.

Conditions: ``ulaw``: 8 kHz through G.711 u-law and back (sox); ``g722``: 16 kHz
through Asterisk's own G.722 codec and back (``file convert`` in the running
sandbox: scripts/asterisk-sandbox start), as the call would carry it.
Files are cached in /var/cache/ivr/speech-wideband.

    .venv/bin/python bench/speech_wideband.py [--markdown]
"""

from __future__ import annotations

import argparse
import hashlib
import shutil
import subprocess
import sys
import time
import wave
from collections import Counter
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import speech_corpus_en  # noqa: E402
from speech_accuracy import feed, inline, print_table, tally  # noqa: E402

from ivr.speech.grammar import SpeechGrammar  # noqa: E402
from ivr.speech.sphinx_backend import SphinxRejection, SphinxSpeech  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
SANDBOX = ROOT / "scripts" / "asterisk-sandbox"
CACHE = Path("/var/cache/ivr/speech-wideband")
VOICES = ("en-us", "en", "en-gb-x-rp", "en-029")
#: Off-menu sentences: none says a phrase of either menu, a digit or a homophone of one.
OFF_MENU = ("what is my balance", "I would like to speak with someone about my bill", "cancel my order",
            "can you help me please", "my internet is not working", "I want to change my address",
            "where is my parcel", "the weather is nice today", "yes please", "no thanks",
            "I have a question about my account", "repeat that", "how much does it cost",
            "I lost my card", "good morning")
CONDITIONS = ("ulaw", "g722")


def sox(*args: str) -> None:
    subprocess.run(["sox", *args], check=True, capture_output=True)


def g722(source16: Path, target: Path) -> None:
    """16 kHz WAV through Asterisk's G.722 encoder and decoder (the sandbox's ``file convert``)."""
    found = subprocess.run([str(SANDBOX), "path"], check=True, capture_output=True, text=True)
    root = Path(found.stdout.strip())
    name = f"ivr-wb-{hashlib.sha256(str(target).encode()).hexdigest()[:16]}"
    inside = root / "tmp" / f"{name}.wav16"
    shutil.copyfile(source16, inside)
    for command in (f"file convert /tmp/{name}.wav16 /tmp/{name}.g722",
                    f"file convert /tmp/{name}.g722 /tmp/{name}-back.wav16"):
        out = subprocess.run([str(SANDBOX), "rx", command], check=True, capture_output=True, text=True).stdout
        if "Converted" not in out:
            raise SystemExit(f"Asterisk could not convert ({command}): {out.strip()}")
    shutil.move(root / "tmp" / f"{name}-back.wav16", target)
    for leftover in (inside, root / "tmp" / f"{name}.g722"):
        leftover.unlink()


def ulaw(source: Path, target: Path, band: bool) -> None:
    """8 kHz through u-law and back; ``band``: band-limit to 300-3400 Hz first (a wideband source)."""
    narrow = target.with_suffix(".law.wav")
    sox(str(source), "-r", "8000", "-e", "u-law", "-b", "8", str(narrow),
        *(["sinc", "300-3400"] if band else []))
    sox(str(narrow), "-e", "signed-integer", "-b", "16", str(target))
    narrow.unlink()


def human_set() -> list[tuple[str, str | None, dict[str, Path]]]:
    """(menu, expected key, condition -> file) for every human utterance of the corpus' clean condition."""
    sounds, corpus = speech_corpus_en.DEFAULT_SOUNDS, speech_corpus_en.DEFAULT_OUT
    items = []
    for utterance in speech_corpus_en.build(corpus, sounds):
        if utterance.condition != "clean":
            continue
        clean = corpus / utterance.path
        files = {}
        for condition in CONDITIONS:
            target = CACHE / "human" / condition / Path(utterance.path).name
            if not target.exists():
                target.parent.mkdir(parents=True, exist_ok=True)
                if condition == "ulaw":
                    ulaw(clean, target, band=False)
                else:
                    wide = target.with_suffix(".16.wav")
                    sox(str(clean), "-r", "16000", str(wide))
                    g722(wide, target)
                    wide.unlink()
            files[condition] = target
        items.append((utterance.menu, utterance.expected, files))
    return items


def espeak_set() -> list[tuple[str, str | None, dict[str, Path]]]:
    """The menus' phrases and the off-menu sentences, in every voice, at 16 kHz, in both conditions."""
    items = []
    for menu, options in speech_corpus_en.MENUS.items():
        said: list[tuple[str, str | None]] = [(phrase, key) for key, (phrases, _) in options.items()
                                             for phrase in phrases]
        said += [(sentence, None) for sentence in OFF_MENU]
        for text, key in said:
            for voice in VOICES:
                stem = f"{menu}-{'in' if key else 'off'}-{voice}-{text.replace(' ', '_')}"
                files = {}
                source = CACHE / "espeak" / "source" / f"{stem}.wav"
                for condition in CONDITIONS:
                    target = CACHE / "espeak" / condition / f"{stem}.wav"
                    if not target.exists():
                        target.parent.mkdir(parents=True, exist_ok=True)
                        if not source.exists():
                            source.parent.mkdir(parents=True, exist_ok=True)
                            raw = source.with_suffix(".tts.wav")
                            subprocess.run(["espeak-ng", "-v", voice, "-w", str(raw), text], check=True)
                            sox(str(raw), "-r", "16000", "-e", "signed-integer", "-b", "16", str(source),
                                "pad", "0.3", "0.6", "norm", "-3")
                            raw.unlink()
                        if condition == "ulaw":
                            ulaw(source, target, band=True)
                        else:
                            g722(source, target)
                    files[condition] = target
                items.append((menu, key, files))
    return items


def seconds(path: Path) -> float:
    with wave.open(str(path), "rb") as reader:
        return reader.getnframes() / reader.getframerate()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--markdown", action="store_true", help="print Markdown tables")
    args = parser.parse_args()
    speech = SphinxSpeech(["en"], rejection=SphinxRejection(penalty=4.0, confirm_penalty=10.0), run=inline)
    speech.load()
    grammars = {menu: SpeechGrammar.build(menu, "en", speech_corpus_en.menu_phrases(menu))
                for menu in speech_corpus_en.MENUS}
    header = ["set", "condition", "in-menu right", "+ after confirm", "wrong", "false reject",
              "off-menu accepted", "confirm asked off-menu", "CPU per turn", "CPU per audio s"]
    rows = []
    for name, items in (("human", human_set()), ("espeak", espeak_set())):
        for condition in CONDITIONS:
            count: Counter[str] = Counter()
            audio = 0.0
            started = time.process_time()
            for menu, expected, files in items:
                tally(count, expected, feed(speech.recognizer("en", grammars[menu]), files[condition]))
            cpu = time.process_time() - started
            audio = sum(seconds(files[condition]) for _, _, files in items)
            ins = sum(1 for _, expected, _ in items if expected is not None)
            offs = len(items) - ins
            rows.append([name, condition, f"{count['right']}/{ins}", str(count["right after confirm"]),
                         str(count["wrong"]), str(count["false reject"] + count["confirm declined"]),
                         f"{count['false accept']}/{offs}", str(count["confirm asked off-menu"]),
                         f"{1000 * cpu / len(items):.0f} ms", f"{cpu / audio:.3f} s"])
    print("English, pocketsphinx (garbage_penalty 4, confirm_penalty 10), 8 kHz u-law against "
          "16 kHz G.722:\n")
    print_table(header, rows, args.markdown)


if __name__ == "__main__":
    main()
