"""Prompt audio: the text in ``voices/prompts.toml`` spoken by espeak-ng, installed for Asterisk.

Every built-in prompt exists as text per language so it can be regenerated
(or handed to a speaker to record) instead of living only as opaque WAVs.
``build`` turns the text into 8 kHz mono 16-bit WAVs, the format Asterisk's
``format_wav`` plays without transcoding; ``install`` lays them out as
``<sounds>/<lang>/<name>.wav``, which Asterisk plays as sound ``<name>`` on a
channel whose ``CHANNEL(language)`` is ``<lang>``.

A text may switch voice for a part with ``{lang:...}`` (the ``lang`` voice from
``[languages]``), so a bilingual prompt such as the language menu sounds right
in both halves: ``"For English, press 1. {zh:中文服务请按2。}"``.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
import tomllib
from collections.abc import Iterable, Sequence
from concurrent.futures import FIRST_EXCEPTION, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tqdm import tqdm  # type: ignore[import-untyped]

from ivr.errors import ConfigError

__all__ = [
    "AUDIO_SUFFIXES",
    "DEFAULT_BUILD_DIR",
    "FORMAT_VERSION",
    "MANIFEST_NAME",
    "PROMPTS_FILE",
    "BuildReport",
    "PromptBook",
    "available",
    "build",
    "install",
    "load_prompts",
    "plain_text",
    "register_cli",
    "segments",
]

PROMPTS_FILE: Path = Path(__file__).resolve().parent.parent / "voices" / "prompts.toml"
DEFAULT_BUILD_DIR: Path = PROMPTS_FILE.parent / "build"
MANIFEST_NAME = "manifest.json"

# Part of every file's fingerprint: bump it (or change the options below) and
# every WAV is rebuilt on the next `ivr voices build`.
FORMAT_VERSION = 1
SAMPLE_RATE = 8000
ESPEAK_OPTIONS: tuple[str, ...] = ("-s", "150")  # words per minute: a little slower than 175 for a phone line
SOX_OUTPUT: tuple[str, ...] = (
    "-t", "wav", "-r", str(SAMPLE_RATE), "-c", "1", "-b", "16", "-e", "signed-integer",
)
SOX_EFFECTS: tuple[str, ...] = ("norm", "-3")  # the same loudness for every voice

# File name extensions Asterisk can play a sound from (a recorded prompt may be
# any of these, not only our generated WAVs).
AUDIO_SUFFIXES = frozenset({
    ".wav", ".WAV", ".wav16", ".gsm", ".ulaw", ".alaw", ".sln", ".sln16", ".sln48",
    ".g722", ".g729", ".g726", ".ilbc", ".siren7", ".siren14", ".ogg", ".h263", ".h264",
})

_PROMPT_NAME = re.compile(r"[a-z0-9][a-z0-9-]*")
# A folder name under Asterisk's sounds folder: "en", "zh", "en_GB", "pt-BR".
_LANGUAGE = re.compile(r"[A-Za-z]{2,3}(?:[_-][A-Za-z0-9]{1,8})*")
_SWITCH = re.compile(r"\{([^{}:]*):([^{}]*)\}")
_DEBIAN_PACKAGE = {"espeak-ng": "espeak-ng", "sox": "sox"}


@dataclass(frozen=True)
class PromptBook:
    """The prompts file, validated: voice per language and text per prompt and language."""

    languages: dict[str, str]
    texts: dict[str, dict[str, str]]
    source: str = field(default=str(PROMPTS_FILE), compare=False)


@dataclass
class BuildReport:
    """What ``build`` did, as ``"lang/name"`` keys."""

    built: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)


# ------------------------------------------------------------------ the prompts file


def load_prompts(path: Path = PROMPTS_FILE) -> PromptBook:
    """Read and validate a prompts file; every problem names the file and the key."""
    source = str(path)
    try:
        data = tomllib.loads(Path(path).read_text(encoding="utf-8"))
    except OSError as exc:
        raise ConfigError(source, "(file)", f"cannot read it ({exc.strerror or exc})",
                          "pass the right file with --prompts") from exc
    except UnicodeDecodeError as exc:
        raise ConfigError(source, "(file)", "not UTF-8 text", "save the file as UTF-8") from exc
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(source, "(syntax)", f"invalid TOML: {exc}", "fix the TOML syntax there") from exc

    unknown = sorted(set(data) - {"languages", "prompts"})
    if unknown:
        raise ConfigError(source, unknown[0], "unknown table or key",
                          "the file holds only [languages] and [prompts.<name>] tables")

    languages = data.get("languages")
    if not isinstance(languages, dict) or not languages:
        raise ConfigError(source, "languages", "missing or empty [languages] table",
                          'add [languages] mapping each language to an espeak-ng voice, e.g. en = "en-us"')
    for lang, voice in languages.items():
        if not _LANGUAGE.fullmatch(lang):
            raise ConfigError(source, f"languages.{lang}", "not a language code",
                              "use a code such as en, zh or en_GB (it names a folder of Asterisk's sounds)")
        if not isinstance(voice, str) or not voice.strip() or voice.startswith("-"):
            raise ConfigError(source, f"languages.{lang}", "the voice must be an espeak-ng voice name",
                              "pick one from `espeak-ng --voices`, e.g. en-us")

    prompts = data.get("prompts")
    if not isinstance(prompts, dict) or not prompts:
        raise ConfigError(source, "prompts", "no prompts", "add a [prompts.<name>] table per prompt")
    texts: dict[str, dict[str, str]] = {}
    for name, table in prompts.items():
        key = f"prompts.{name}"
        if not _PROMPT_NAME.fullmatch(name):
            raise ConfigError(source, key, "bad prompt name",
                              "use lower-case letters, digits and '-', starting with a letter or digit")
        if not isinstance(table, dict):
            raise ConfigError(source, key, "must be a table of texts per language",
                              f'write [prompts.{name}] followed by lines like en = "..."')
        for lang in table:
            if lang not in languages:
                raise ConfigError(source, f"{key}.{lang}", "language not listed in [languages]",
                                  "add it to [languages] or fix the code")
        for lang in languages:
            if lang not in table:
                raise ConfigError(source, f"{key}.{lang}", "missing text for this language",
                                  f'add {lang} = "..." to [prompts.{name}]')
            text = table[lang]
            if not isinstance(text, str):
                raise ConfigError(source, f"{key}.{lang}", f"must be a string, not {type(text).__name__}",
                                  'write the text in quotes: en = "..."')
            _check_switches(source, f"{key}.{lang}", text, languages)
        texts[name] = {lang: table[lang] for lang in languages}
    return PromptBook(dict(languages), texts, source)


def _check_switches(source: str, key: str, text: str, languages: dict[str, Any]) -> None:
    rest = _SWITCH.sub("", text)
    if "{" in rest or "}" in rest:
        raise ConfigError(source, key, "unbalanced or nested { }",
                          "use {lang:text} to switch voice, with no braces inside")
    for match in _SWITCH.finditer(text):
        if match.group(1) not in languages:
            raise ConfigError(source, key, f"voice switch to unknown language {match.group(1)!r}",
                              "use a language from [languages], as in {zh:...}")
    if not plain_text(text).strip():
        raise ConfigError(source, key, "empty text", "write what the prompt says")


def segments(book: PromptBook, language: str, name: str) -> list[tuple[str, str]]:
    """The (voice, text) parts espeak-ng speaks for one prompt, in order."""
    text = book.texts[name][language]
    own = book.languages[language]
    parts: list[tuple[str, str]] = []
    pos = 0
    for match in _SWITCH.finditer(text):
        parts.append((own, text[pos:match.start()]))
        parts.append((book.languages[match.group(1)], match.group(2)))
        pos = match.end()
    parts.append((own, text[pos:]))
    return [(voice, part.strip()) for voice, part in parts if part.strip()]


def plain_text(text: str) -> str:
    """The text without voice switches, for people (transcripts, a speaker recording it)."""
    return _SWITCH.sub(lambda m: m.group(2), text)


# ------------------------------------------------------------------ building


@dataclass(frozen=True)
class _Job:
    language: str
    name: str
    source: str
    parts: tuple[tuple[str, str], ...]
    digest: str
    target: Path

    @property
    def key(self) -> str:
        return f"{self.language}/{self.name}"


def _fingerprint(parts: Sequence[tuple[str, str]]) -> str:
    recipe = {"format": FORMAT_VERSION, "espeak": ESPEAK_OPTIONS, "sox": [*SOX_OUTPUT, *SOX_EFFECTS],
              "parts": [list(p) for p in parts]}
    return hashlib.sha256(json.dumps(recipe, ensure_ascii=False, sort_keys=True).encode()).hexdigest()


def _read_manifest(out_dir: Path) -> dict[str, str]:
    """Fingerprints of the files built so far; a damaged manifest just means rebuilding."""
    try:
        data = json.loads((out_dir / MANIFEST_NAME).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    if not isinstance(data, dict):
        return {}
    return {k: v for k, v in data.items() if isinstance(k, str) and isinstance(v, str)}


def _write_manifest(out_dir: Path, manifest: dict[str, str]) -> None:
    out_dir.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=out_dir, prefix=f".{MANIFEST_NAME}.", suffix=".tmp")
    with os.fdopen(fd, "w", encoding="utf-8") as f:
        json.dump(dict(sorted(manifest.items())), f, ensure_ascii=False, indent=1)
        f.write("\n")
    os.replace(tmp, out_dir / MANIFEST_NAME)


def _tool(name: str) -> str:
    path = shutil.which(name)
    if path is None:
        raise ConfigError("PATH", name, f"{name} is not installed",
                          f"install the Debian package: apt-get install {_DEBIAN_PACKAGE[name]}")
    return path


def _voice_names(espeak: str, kind: str) -> set[str]:
    """Every name ``-v`` takes for a voice (or variant), lower-cased, from ``espeak-ng --voices``."""
    done = subprocess.run([espeak, f"--voices{kind}"], capture_output=True, text=True)
    names: set[str] = set()
    for line in done.stdout.splitlines()[1:]:
        cols = line.split()
        if len(cols) >= 5:
            names.update({cols[1], cols[3], cols[4], cols[4].rsplit("/", 1)[-1]})
            names.update(re.findall(r"\(([^ ()]+) \d+\)", line))
    return {n.lower() for n in names}


def _check_voices(espeak: str, book: PromptBook, voices: Iterable[str]) -> None:
    """Fail once, naming [languages], when a voice does not exist.

    Checked against the list because espeak-ng itself falls back on a prefix
    without a word: "no-such-voice" speaks Norwegian, "en-usx" English.
    """
    by_voice = {voice: lang for lang, voice in book.languages.items()}
    known, variants = _voice_names(espeak, ""), _voice_names(espeak, "=variant")
    for voice in sorted(set(voices)):
        base, _, variant = voice.lower().partition("+")
        if known and (base not in known or (variant and variant not in variants)):
            raise ConfigError(book.source, f"languages.{by_voice.get(voice, voice)}",
                              f"espeak-ng has no voice {voice!r}",
                              "pick one from `espeak-ng --voices` (a variant from --voices=variant)")


def _run(cmd: list[str], job: _Job) -> None:
    done = subprocess.run(cmd, capture_output=True, text=True)
    if done.returncode != 0:
        tool = Path(cmd[0]).name
        raise ConfigError(job.source, f"prompts.{job.name}.{job.language}",
                          f"{tool} failed with exit status {done.returncode}: "
                          f"{done.stderr.strip() or '(no message)'}",
                          "check the text and the voice; run the command by hand to see more")


def _make(job: _Job, espeak: str, sox: str) -> None:
    """Speak each part, then resample and join them; the WAV appears whole or not at all."""
    job.target.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="ivr-voices-") as work:
        spoken: list[str] = []
        for i, (voice, text) in enumerate(job.parts):
            raw = os.path.join(work, f"{i}.wav")
            # argument list, no shell; "--" so a text starting with "-" is not an option
            _run([espeak, *ESPEAK_OPTIONS, "-v", voice, "-w", raw, "--", text], job)
            spoken.append(raw)
        fd, tmp = tempfile.mkstemp(dir=job.target.parent, prefix=f".{job.target.stem}.", suffix=".tmp")
        os.close(fd)
        try:
            _run([sox, *spoken, *SOX_OUTPUT, tmp, *SOX_EFFECTS], job)
            os.chmod(tmp, 0o644)
            os.replace(tmp, job.target)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise


def build(book: PromptBook, out_dir: Path = DEFAULT_BUILD_DIR, force: bool = False,
          progress: bool = True, workers: int | None = None) -> BuildReport:
    """Make ``out_dir/<lang>/<name>.wav`` for every prompt, skipping files already up to date.

    A file is up to date when ``out_dir/manifest.json`` holds the fingerprint of
    its voice, text and audio format and the file exists, so editing one text
    rebuilds one file. The progress bar goes to stderr and only to a terminal.
    """
    out_dir = Path(out_dir)
    manifest = _read_manifest(out_dir)
    report = BuildReport()
    todo: list[_Job] = []
    for name in sorted(book.texts):
        for lang in sorted(book.languages):
            parts = tuple(segments(book, lang, name))
            job = _Job(lang, name, book.source, parts, _fingerprint(parts), out_dir / lang / f"{name}.wav")
            if not force and manifest.get(job.key) == job.digest and job.target.is_file():
                report.skipped.append(job.key)
            else:
                todo.append(job)
    if not todo:
        return report

    espeak, sox = _tool("espeak-ng"), _tool("sox")
    _check_voices(espeak, book, (voice for job in todo for voice, _ in job.parts))
    count = workers or max(2, min(4, os.cpu_count() or 2))
    bar = tqdm(total=len(todo), desc="voices", unit="file", file=sys.stderr,
               disable=None if progress else True, leave=False)
    pool = ThreadPoolExecutor(max_workers=count, thread_name_prefix="ivr-voices")
    try:
        pending: dict[Future[None], _Job] = {pool.submit(_make, job, espeak, sox): job for job in todo}
        while pending:
            done, _ = wait(pending, return_when=FIRST_EXCEPTION)
            for future in done:
                job = pending.pop(future)
                future.result()  # a failure (or Ctrl-C meanwhile) leaves through the finally below
                manifest[job.key] = job.digest
                report.built.append(job.key)
                bar.update(1)
    finally:
        # not-yet-started files are dropped; the few running ones finish (their temp files go)
        pool.shutdown(wait=True, cancel_futures=True)
        bar.close()
        # keep what was finished, even when a later file failed or the build was interrupted
        if report.built:
            _write_manifest(out_dir, manifest)
    report.built.sort()
    return report


# ------------------------------------------------------------------ installing and looking up


def install(build_dir: Path, sounds_dir: Path) -> int:
    """Copy ``build_dir/<lang>/<name>.wav`` into ``sounds_dir/<lang>/``; return how many files.

    Each file is replaced atomically, so a call playing a prompt meanwhile hears
    the old or the new one, never half of one.
    """
    build_dir, sounds_dir = Path(build_dir), Path(sounds_dir)
    if not build_dir.is_dir():
        raise ConfigError(str(build_dir), "build folder", "does not exist",
                          "run `ivr voices build` first (or pass --build-dir)")
    count = 0
    for lang_dir in sorted(build_dir.iterdir()):
        if not (lang_dir.is_dir() and _LANGUAGE.fullmatch(lang_dir.name)):
            continue
        files = sorted(p for p in lang_dir.glob("*.wav") if p.is_file() and not p.name.startswith("."))
        if not files:
            continue
        dest = sounds_dir / lang_dir.name
        dest.mkdir(parents=True, exist_ok=True)
        for wav in files:
            fd, tmp = tempfile.mkstemp(dir=dest, prefix=f".{wav.stem}.", suffix=".tmp")
            os.close(fd)
            try:
                shutil.copyfile(wav, tmp)
                os.chmod(tmp, 0o644)
                os.replace(tmp, dest / wav.name)
            except BaseException:
                Path(tmp).unlink(missing_ok=True)
                raise
            count += 1
    return count


def available(folder: Path, language: str) -> set[str]:
    """Names of the sounds ``folder/<language>/`` holds (a build folder or Asterisk's sounds folder).

    A name is the path below the language folder without the extension, as
    Asterisk's Playback takes it: ``ivr-welcome``, ``digits/1``. Menu validation
    uses it to refuse a menu whose prompt file is missing.
    """
    base = Path(folder) / language
    if not base.is_dir():
        return set()
    names: set[str] = set()
    for dirpath, dirnames, filenames in os.walk(base):
        dirnames[:] = [d for d in dirnames if not d.startswith(".")]
        rel = Path(dirpath).relative_to(base)
        for filename in filenames:
            stem, suffix = os.path.splitext(filename)
            if suffix in AUDIO_SUFFIXES and not filename.startswith("."):
                names.add((rel / stem).as_posix())
    return names


# ------------------------------------------------------------------ command line


def _cli_build(args: argparse.Namespace) -> int:
    book = load_prompts(Path(args.prompts))
    out = Path(args.out)
    started = time.monotonic()
    report = build(book, out, force=args.force)
    print(f"voices: built {len(report.built)}, up to date {len(report.skipped)} "
          f"({len(book.texts)} prompts x {len(book.languages)} languages) "
          f"in {time.monotonic() - started:.1f} s -> {out}")
    return 0


def _cli_install(args: argparse.Namespace) -> int:
    count = install(Path(args.build_dir), Path(args.sounds_dir))
    print(f"voices: installed {count} files from {args.build_dir} into {args.sounds_dir}")
    return 0


def register_cli(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add ``voices build`` and ``voices install`` to the ``ivr`` command's subparsers."""
    voices = subparsers.add_parser("voices", help="prompt audio: build it from text, install it for Asterisk")
    commands = voices.add_subparsers(dest="voices_command", required=True)
    build_cmd = commands.add_parser(
        "build", help="make 8 kHz WAVs from the prompts file with espeak-ng",
        description="Speak every prompt of the prompts file in every language into <out>/<lang>/<name>.wav "
                    "(8 kHz mono 16-bit), skipping files whose voice and text have not changed.")
    build_cmd.add_argument("--prompts", default=str(PROMPTS_FILE), metavar="FILE",
                           help="prompts file (default: %(default)s)")
    build_cmd.add_argument("--out", default=str(DEFAULT_BUILD_DIR), metavar="DIR",
                           help="output folder (default: %(default)s)")
    build_cmd.add_argument("--force", action="store_true", help="rebuild every file, even those up to date")
    build_cmd.set_defaults(run=_cli_build)
    install_cmd = commands.add_parser(
        "install", help="copy built prompts into Asterisk's sounds folder",
        description="Copy <build-dir>/<lang>/<name>.wav to <sounds-dir>/<lang>/, where Asterisk plays it "
                    "as sound <name> on a channel whose language is <lang>.")
    install_cmd.add_argument("--build-dir", default=str(DEFAULT_BUILD_DIR), metavar="DIR",
                             help="what `voices build` made (default: %(default)s)")
    install_cmd.add_argument("--sounds-dir", required=True, metavar="DIR",
                             help="Asterisk's sounds folder, e.g. /usr/share/asterisk/sounds")
    install_cmd.set_defaults(run=_cli_install)

