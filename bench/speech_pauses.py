#!/usr/bin/env python3
"""Callers who pause inside a menu phrase: does the early decision cut them off?

The whole-utterance pocketsphinx decode ends a turn after ``early_end_seconds``
(0.25 s) of quiet when a decode of the audio so far is sure of one option's
whole phrase (docs/benchmarks.md, "An early decision for the whole decode").
A caller who stops between "speed" and "dial" for 0.3-0.5 s gives it that
quiet before the phrase is complete. For every multi-word phrase of the
English corpus' ``words`` menu (bench/speech_corpus_en.py), this finds the
word boundaries with pocketsphinx's own segmentation of the recording (the
default lenient search), inserts ``--pauses`` seconds of silence at each, and
feeds the result through the real recogniser twice: with the early decision
and without it (``early_end_seconds`` 99). Per pause it counts turns decided
*inside* the inserted pause (cut off), and decisions that differ between the
two.

    .venv/bin/python bench/speech_pauses.py [--pauses 0.3,0.4,0.5] [--conditions phone,clean]
"""

from __future__ import annotations

import argparse
import sys
import wave
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import speech_accuracy  # noqa: E402
import speech_corpus_en  # noqa: E402

from ivr.speech.grammar import SpeechGrammar  # noqa: E402
from ivr.speech.recognizer import SpeechResult  # noqa: E402
from ivr.speech.sphinx_backend import SphinxSpeech, _decode  # noqa: E402
from ivr.speech.vad import VADSettings  # noqa: E402
from ivr.speech.wideband import double_rate  # noqa: E402


def boundaries(speech: SphinxSpeech, grammar: SpeechGrammar, pcm: bytes) -> list[int]:
    """Byte offsets (8 kHz) between the words the lenient whole decode hears, mid-way through any gap."""
    engine = speech.lease("en")
    try:
        penalty = speech.rejection.confirm_penalty or speech.rejection.penalty
        beams = speech.rejection.confirm_beams or speech.rejection.beams
        _decode(engine, grammar, penalty, beams, double_rate(pcm))
        words = [(s.word, s.start_frame, s.end_frame) for s in engine.decoder.seg()
                 if not s.word.startswith(("<", "[", "+"))]
    finally:
        speech.give_back("en", engine)
    # pocketsphinx frames are 10 ms: 80 samples, 160 bytes at 8 kHz
    return [(a[2] + 1 + b[1]) // 2 * 160 for a, b in zip(words, words[1:], strict=False)]


def hear(speech: SphinxSpeech, grammar: SpeechGrammar, pcm: bytes, tail: float) -> tuple[SpeechResult, int]:
    """The decision, and the bytes fed when it came."""
    pcm += bytes(int(tail * 8000) * 2)
    recognizer = speech.recognizer("en", grammar)
    assert recognizer is not None
    box: list[SpeechResult] = []
    recognizer.result().addCallback(box.append)
    fed = 0
    for offset in range(0, len(pcm), 320):
        recognizer.feed(pcm[offset:offset + 320], 8000)
        fed = offset + 320
        if box:
            break
    recognizer.finish()
    return box[0], fed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--corpus-en", type=Path, default=speech_corpus_en.DEFAULT_OUT)
    parser.add_argument("--pauses", default="0.3,0.4,0.5", help="seconds of silence inserted between words")
    parser.add_argument("--conditions", default="phone,clean,phone-noise20")
    parser.add_argument("--tail", type=float, default=1.0)
    args = parser.parse_args()
    rejection = speech_accuracy.setting("4/30", "whole", "narrow", "wide")
    early = SphinxSpeech(["en"], rejection=rejection, run=speech_accuracy.inline)
    late = SphinxSpeech(["en"], rejection=rejection, run=speech_accuracy.inline,
                        vad=VADSettings(early_end_seconds=99.0))
    for speech in (early, late):
        speech.load()
    menu = speech_corpus_en.MENUS["words"]
    grammar = SpeechGrammar.build("words", "en", speech_corpus_en.menu_phrases("words"))
    utterances = [u for u in speech_corpus_en.build(args.corpus_en)
                  if u.menu == "words" and u.expected and " " in menu[u.expected][0][0]
                  and u.condition in args.conditions.split(",")]
    print("| condition | recording | pause s | at word | with early decision | quiet s | without | cut off |")
    print("|---|---|---:|---:|---|---:|---|---|")
    totals: dict[str, Any] = {"turns": 0, "cut": 0, "differ": 0, "early": 0}
    for utterance in utterances:
        with wave.open(str(args.corpus_en / utterance.path), "rb") as reader:
            pcm = reader.readframes(reader.getnframes())
        for index, cut in enumerate(boundaries(early, grammar, pcm), 1):
            for pause in (float(p) for p in args.pauses.split(",")):
                paused = pcm[:cut] + bytes(int(pause * 8000) * 2) + pcm[cut:]
                (with_early, fed), (without, _) = (hear(early, grammar, paused, args.tail),
                                                   hear(late, grammar, paused, args.tail))
                cut_off = fed <= cut + int(pause * 8000) * 2
                totals["turns"] += 1
                totals["cut"] += cut_off
                totals["differ"] += (with_early.choice, with_early.reason) != (without.choice, without.reason)
                quiet = fed / 16000 - with_early.speech_end if with_early.speech_end is not None else None
                totals["early"] += quiet is not None and quiet < 0.5
                print(f"| {utterance.condition} | {utterance.source} | {pause:g} | {index} "
                      f"| {with_early.reason} {with_early.choice} ({with_early.transcript!r}) "
                      f"| {'-' if quiet is None else f'{quiet:.2f}'} "
                      f"| {without.reason} {without.choice} | {'**yes**' if cut_off else 'no'} |")
    print(f"\n{totals['turns']} paused turns: {totals['cut']} cut off inside the pause, {totals['differ']} "
          f"decided otherwise than without the early decision, {totals['early']} decided early (at the end)")


if __name__ == "__main__":
    main()
