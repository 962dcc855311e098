"""pocketsphinx decode variants on a sample of the English phone corpus: beams, streaming or whole.

The sample: every in-menu utterance of the ``phone`` condition of
bench/speech_corpus_en.py and every 4th off-menu one. ``MODE`` is
``stream`` (ivr's recogniser as it is), ``batch`` (the same grammar, decoded
whole at the end of speech with batch cepstral mean normalisation), and
either with ``-wide`` (pocketsphinx's default beams instead of ivr's narrow
ones). Prints, per penalty: CPU seconds and (right, false accepts, off-menu
utterances) per menu.

    .venv/bin/python bench/speech_sphinx_modes.py stream 10,13
    .venv/bin/python bench/speech_sphinx_modes.py batch-wide 10,20,30
"""

from __future__ import annotations

import sys
import time
from collections import Counter
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import speech_accuracy as A  # noqa: E402
import speech_corpus_en as C  # noqa: E402

from ivr.speech import sphinx_backend as S  # noqa: E402
from ivr.speech.grammar import SpeechGrammar  # noqa: E402


def batch_accept(self: Any, pcm: bytes, rate: int, final: bool) -> S.SphinxHypothesis | str:
    """The turn's audio decoded whole at the end (``full_utt``), instead of streaming."""
    if rate == 8000:
        pcm = S.upsample(pcm)
    self.audio.append(pcm)
    if not final:
        return ""
    engine = self.speech.lease("en")
    engine.use(self.grammar, self.strict)
    decoder = engine.decoder
    decoder.start_utt()
    decoder.process_raw(b"".join(self.audio), False, True)
    decoder.end_utt()
    hyp = decoder.hyp()
    self.speech.give_back("en", engine)
    self.audio = []
    return S.SphinxHypothesis(tuple(hyp.hypstr.split()) if hyp else (), 1.0, True)


def main() -> None:
    mode, penalties = sys.argv[1], sys.argv[2].split(",")
    beams = {"beam": 1e-48, "wbeam": 7e-29, "pbeam": 1e-48} if "wide" in mode else {}
    utterances = [u for u in C.build() if u.condition == "phone"]
    utterances = [u for i, u in enumerate(utterances) if u.expected or i % 4 == 0]
    grammars = {menu: SpeechGrammar.build(menu, "en", C.menu_phrases(menu)) for menu in C.MENUS}
    if mode.startswith("batch"):
        S._TurnDecoder.accept = batch_accept  # type: ignore[method-assign,assignment]
    for penalty in penalties:
        speech = S.SphinxSpeech(["en"], rejection=S.SphinxRejection(penalty=float(penalty), **beams),
                                run=A.inline)
        speech.load()
        counts = {menu: Counter[str]() for menu in C.MENUS}
        started = time.process_time()
        for u in utterances:
            A.tally(counts[u.menu], u.expected, A.feed(speech.recognizer("en", grammars[u.menu]),
                                                       C.DEFAULT_OUT / u.path))
        summary = {m: (c["right"], c["false accept"], c["false accept"] + c["rejected off-menu"])
                   for m, c in counts.items()}
        print(mode, penalty, f"cpu {time.process_time() - started:.0f}", summary, flush=True)


if __name__ == "__main__":
    main()
