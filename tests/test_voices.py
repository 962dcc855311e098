"""voices/: the prompts file, the espeak-ng build, the install layout and the CLI.

The build tests run the real espeak-ng and sox (Debian packages installed by
scripts/bootstrap) on a two-prompt file, so they stay fast.
"""

from __future__ import annotations

import argparse
import array
import math
import sys
import time
import wave
from pathlib import Path

import pytest

from ivr.errors import ConfigError
from ivr.voices import (
    DEFAULT_BUILD_DIR,
    MANIFEST_NAME,
    PROMPTS_FILE,
    PromptBook,
    available,
    build,
    install,
    load_prompts,
    plain_text,
    register_cli,
    segments,
)

# names the menu code uses: they must exist in every language
REQUIRED = {
    "ivr-welcome", "ivr-language-menu", "ivr-main-menu", "ivr-after-sales-menu", "ivr-invalid",
    "ivr-timeout", "ivr-goodbye", "ivr-connecting", "ivr-closed", "ivr-opening-hours",
    "ivr-callback-offer", "ivr-callback-confirmed", "ivr-callback-refused", "ivr-repair-info",
    "ivr-maintenance-info",
    "ivr-sales-info", "ivr-recording-notice",
}

SMALL = """\
[languages]
en = "en-us"
zh = "cmn-latn-pinyin"

[prompts.hello]
en = "Hello."
zh = "你好。"

[prompts.press-one]
en = "Press 1. {zh:请按1。}"
zh = "请按1。"
"""


def write(tmp_path: Path, text: str, name: str = "prompts.toml") -> Path:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


def rms(path: Path) -> float:
    with wave.open(str(path), "rb") as w:
        samples = array.array("h", w.readframes(w.getnframes()))
    if sys.byteorder == "big":
        samples.byteswap()
    return math.sqrt(sum(s * s for s in samples) / max(len(samples), 1))


def assert_phone_wav(path: Path) -> None:
    with wave.open(str(path), "rb") as w:
        assert (w.getframerate(), w.getnchannels(), w.getsampwidth(), w.getcomptype()) == (8000, 1, 2, "NONE")
        assert w.getnframes() > 8000 * 0.3, "shorter than 0.3 s: espeak said nothing?"
    assert rms(path) > 100, f"{path} is (almost) silent"


# ------------------------------------------------------------------ the real prompts file


def test_prompts_file_has_every_prompt_in_english_and_chinese() -> None:
    book = load_prompts(PROMPTS_FILE)
    assert {"en", "zh"} <= set(book.languages)
    assert REQUIRED <= set(book.texts)
    for name, texts in book.texts.items():
        assert set(texts) == set(book.languages), name
        assert all(plain_text(t).strip() for t in texts.values()), name
    assert DEFAULT_BUILD_DIR == PROMPTS_FILE.parent / "build"


def test_chinese_texts_are_chinese_and_english_texts_are_not() -> None:
    """A copy-paste slip (English text under zh) would otherwise pass unnoticed."""
    book = load_prompts(PROMPTS_FILE)
    for name, texts in book.texts.items():
        assert any("\u4e00" <= ch <= "\u9fff" for ch in texts["zh"]), name
        spoken_en = [text for voice, text in segments(book, "en", name) if voice == book.languages["en"]]
        assert not any("\u4e00" <= ch <= "\u9fff" for text in spoken_en for ch in text), name


def test_the_real_file_builds_quickly(tmp_path: Path) -> None:
    book = load_prompts(PROMPTS_FILE)
    started = time.monotonic()
    report = build(book, tmp_path, progress=False)
    assert time.monotonic() - started < 20
    assert len(report.built) == len(book.texts) * len(book.languages)
    for lang in book.languages:
        assert available(tmp_path, lang) == set(book.texts)
    assert_phone_wav(tmp_path / "zh" / "ivr-welcome.wav")
    assert_phone_wav(tmp_path / "en" / "ivr-language-menu.wav")


# ------------------------------------------------------------------ building


def test_build_makes_8khz_mono_16bit_speech(tmp_path: Path) -> None:
    book = load_prompts(write(tmp_path, SMALL))
    out = tmp_path / "build"
    report = build(book, out, progress=False)
    assert report.built == ["en/hello", "en/press-one", "zh/hello", "zh/press-one"]
    assert report.skipped == []
    for key in report.built:
        assert_phone_wav(out / f"{key}.wav")
    # the voice switch speaks both parts: longer than the Chinese part alone
    with wave.open(str(out / "en" / "press-one.wav")) as both, \
            wave.open(str(out / "zh" / "press-one.wav")) as zh:
        assert both.getnframes() > zh.getnframes() * 1.3
    leftovers = [p.name for p in out.rglob("*") if p.name.startswith(".")]
    assert leftovers == [], "temporary files left behind"


def test_second_build_skips_everything_and_an_edit_rebuilds_one_file(tmp_path: Path) -> None:
    prompts = write(tmp_path, SMALL)
    out = tmp_path / "build"
    build(load_prompts(prompts), out, progress=False)
    before = {p: p.stat().st_mtime_ns for p in out.rglob("*.wav")}

    again = build(load_prompts(prompts), out, progress=False)
    assert again.built == []
    assert len(again.skipped) == 4
    assert {p: p.stat().st_mtime_ns for p in out.rglob("*.wav")} == before

    write(tmp_path, SMALL.replace('zh = "你好。"', 'zh = "您好。"'))
    edited = build(load_prompts(prompts), out, progress=False)
    assert edited.built == ["zh/hello"]
    assert sorted(edited.skipped) == ["en/hello", "en/press-one", "zh/press-one"]


def test_a_voice_change_a_missing_file_or_force_rebuild(tmp_path: Path) -> None:
    prompts = write(tmp_path, SMALL)
    out = tmp_path / "build"
    build(load_prompts(prompts), out, progress=False)

    (out / "en" / "hello.wav").unlink()
    assert build(load_prompts(prompts), out, progress=False).built == ["en/hello"]

    write(tmp_path, SMALL.replace('en = "en-us"', 'en = "en-gb"'))
    # press-one's zh text has no English part, so it stays; the rest use the en voice
    assert build(load_prompts(prompts), out, progress=False).built == ["en/hello", "en/press-one"]

    assert len(build(load_prompts(prompts), out, force=True, progress=False).built) == 4


def test_a_damaged_manifest_means_rebuilding_not_failing(tmp_path: Path) -> None:
    prompts = write(tmp_path, SMALL)
    out = tmp_path / "build"
    build(load_prompts(prompts), out, progress=False)
    (out / MANIFEST_NAME).write_text("{not json", encoding="utf-8")
    assert len(build(load_prompts(prompts), out, progress=False).built) == 4
    assert len(build(load_prompts(prompts), out, progress=False).skipped) == 4


def test_text_that_looks_like_an_option_is_spoken_not_obeyed(tmp_path: Path) -> None:
    target = tmp_path / "owned.wav"
    book = PromptBook({"en": "en-us"}, {"dash": {"en": f"-w {target} --help"}})
    build(book, tmp_path / "build", progress=False)
    assert_phone_wav(tmp_path / "build" / "en" / "dash.wav")
    assert not target.exists()


def test_an_unknown_voice_names_the_language(tmp_path: Path) -> None:
    prompts = write(tmp_path, SMALL.replace('en = "en-us"', 'en = "no-such-voice"'))
    with pytest.raises(ConfigError) as info:
        build(load_prompts(prompts), tmp_path / "build", progress=False)
    assert str(prompts) in str(info.value)
    assert info.value.key == "languages.en"


def test_missing_tools_name_the_debian_package(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PATH", str(tmp_path / "empty"))
    with pytest.raises(ConfigError) as info:
        build(load_prompts(write(tmp_path, SMALL)), tmp_path / "build", progress=False)
    assert "apt-get install espeak-ng" in str(info.value)
    # nothing to build needs no tools at all
    build(PromptBook({"en": "en-us"}, {}), tmp_path / "build", progress=False)


# ------------------------------------------------------------------ installing and looking up


def test_install_lays_out_lang_name_wav(tmp_path: Path) -> None:
    out = tmp_path / "build"
    build(load_prompts(write(tmp_path, SMALL)), out, progress=False)
    sounds = tmp_path / "sounds"
    (sounds / "en").mkdir(parents=True)
    (sounds / "en" / "hello.wav").write_bytes(b"old")  # replaced
    (sounds / "en" / "beep.gsm").write_bytes(b"x")  # left alone
    assert install(out, sounds) == 4
    assert sorted(p.relative_to(sounds).as_posix() for p in sounds.rglob("*") if p.is_file()) == [
        "en/beep.gsm", "en/hello.wav", "en/press-one.wav", "zh/hello.wav", "zh/press-one.wav",
    ]
    assert (sounds / "zh" / "hello.wav").read_bytes() == (out / "zh" / "hello.wav").read_bytes()
    assert not (sounds / MANIFEST_NAME).exists()
    assert available(sounds, "en") == {"beep", "hello", "press-one"}
    assert available(sounds, "zh") == {"hello", "press-one"}
    assert available(sounds, "fr") == set()


def test_install_follows_a_symlinked_language_folder(tmp_path: Path) -> None:
    """Debian's sounds/en is a symlink to en_US_f_Allison: it must stay one."""
    out = tmp_path / "build"
    build(load_prompts(write(tmp_path, SMALL)), out, progress=False)
    sounds = tmp_path / "sounds"
    (sounds / "en_US_f_Allison" / "digits").mkdir(parents=True)
    (sounds / "en_US_f_Allison" / "digits" / "1.wav").write_bytes(b"x")
    (sounds / "en").symlink_to("en_US_f_Allison")
    install(out, sounds)
    assert (sounds / "en").is_symlink()
    assert (sounds / "en_US_f_Allison" / "hello.wav").is_file()
    assert available(sounds, "en") == {"digits/1", "hello", "press-one"}


def test_install_without_a_build_says_to_build(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="ivr voices build"):
        install(tmp_path / "nothing", tmp_path / "sounds")


# ------------------------------------------------------------------ command line


def parse(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="ivr")
    register_cli(parser.add_subparsers(dest="command", required=True))
    return parser.parse_args(argv)


def test_cli_build_and_install(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    prompts = write(tmp_path, SMALL)
    out, sounds = tmp_path / "build", tmp_path / "sounds"
    args = parse(["voices", "build", "--prompts", str(prompts), "--out", str(out)])
    assert args.run(args) == 0
    assert "built 4, up to date 0" in capsys.readouterr().out
    assert args.run(args) == 0
    assert "built 0, up to date 4" in capsys.readouterr().out
    args = parse(["voices", "install", "--build-dir", str(out), "--sounds-dir", str(sounds)])
    assert args.run(args) == 0
    assert "installed 4 files" in capsys.readouterr().out
    assert (sounds / "zh" / "press-one.wav").is_file()


def test_cli_defaults() -> None:
    args = parse(["voices", "build"])
    assert (Path(args.prompts), Path(args.out), args.force) == (PROMPTS_FILE, DEFAULT_BUILD_DIR, False)
    args = parse(["voices", "install", "--sounds-dir", "/x"])
    assert Path(args.build_dir) == DEFAULT_BUILD_DIR
    with pytest.raises(SystemExit):
        parse(["voices", "install"])  # --sounds-dir is required


# ------------------------------------------------------------------ a bad prompts file

HEAD = '[languages]\nen = "en-us"\nzh = "cmn-latn-pinyin"\n'

BAD = {
    "syntax": (HEAD + "[prompts.a\n", "(syntax)"),
    "no-languages": ('[prompts.a]\nen = "Hi"\n', "languages"),
    "empty-languages": ('[languages]\n[prompts.a]\nen = "Hi"\n', "languages"),
    "bad-language-code": ('[languages]\n"../etc" = "en-us"\n[prompts.a]\n"../etc" = "Hi"\n',
                          "languages.../etc"),
    "voice-not-string": ('[languages]\nen = 1\n[prompts.a]\nen = "Hi"\n', "languages.en"),
    "no-prompts": (HEAD, "prompts"),
    "missing-language": (HEAD + '[prompts.ivr-welcome]\nen = "Welcome."\n', "prompts.ivr-welcome.zh"),
    "extra-language": (HEAD + '[prompts.a]\nen = "Hi"\nzh = "你好"\nfr = "Salut"\n', "prompts.a.fr"),
    "not-string": (HEAD + '[prompts.a]\nen = "Hi"\nzh = 3\n', "prompts.a.zh"),
    "empty-text": (HEAD + '[prompts.a]\nen = "  "\nzh = "你好"\n', "prompts.a.en"),
    "bad-name-upper": (HEAD + '[prompts.Welcome]\nen = "Hi"\nzh = "你好"\n', "prompts.Welcome"),
    "bad-name-path": (HEAD + '[prompts."../x"]\nen = "Hi"\nzh = "你好"\n', "prompts.../x"),
    "bad-name-dash": (HEAD + '[prompts.-x]\nen = "Hi"\nzh = "你好"\n', "prompts.-x"),
    "prompt-not-table": (HEAD + '[prompts]\na = "Hi"\n', "prompts.a"),
    "unknown-switch": (HEAD + '[prompts.a]\nen = "Hi {fr:Salut}"\nzh = "你好"\n', "prompts.a.en"),
    "unbalanced-switch": (HEAD + '[prompts.a]\nen = "Hi {zh:你好"\nzh = "你好"\n', "prompts.a.en"),
    "unknown-table": (HEAD + '[prompt.a]\nen = "Hi"\nzh = "你好"\n', "prompt"),
}


@pytest.mark.parametrize("case", sorted(BAD))
def test_a_bad_prompts_file_names_the_file_and_key(tmp_path: Path, case: str) -> None:
    text, key = BAD[case]
    path = write(tmp_path, text)
    with pytest.raises(ConfigError) as info:
        load_prompts(path)
    assert info.value.source == str(path)
    assert info.value.key == key
    assert str(path) in str(info.value) and key in str(info.value)


def test_a_missing_or_binary_prompts_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="cannot read"):
        load_prompts(tmp_path / "absent.toml")
    binary = tmp_path / "binary.toml"
    binary.write_bytes(b"\xff\xfe\x00")
    with pytest.raises(ConfigError, match="UTF-8"):
        load_prompts(binary)


def test_segments_and_plain_text() -> None:
    book = PromptBook({"en": "en-us", "zh": "cmn-latn-pinyin"}, {"menu": {
        "en": "For English, press 1. {zh:中文服务请按2。}",
        "zh": "{en:Press 1.}请按2。",
    }})
    assert segments(book, "en", "menu") == [
        ("en-us", "For English, press 1."), ("cmn-latn-pinyin", "中文服务请按2。"),
    ]
    assert segments(book, "zh", "menu") == [("en-us", "Press 1."), ("cmn-latn-pinyin", "请按2。")]
    assert plain_text("For English, press 1. {zh:中文服务请按2。}") == "For English, press 1. 中文服务请按2。"


def test_loading_needs_no_tools(monkeypatch: pytest.MonkeyPatch) -> None:
    """Loading the prompts (as menu validation may at start-up) runs neither espeak-ng nor sox."""
    monkeypatch.setenv("PATH", "")
    assert load_prompts(PROMPTS_FILE).texts


@pytest.mark.parametrize("voice", ["en-us", "EN-US", "en-us+f3", "zh", "cmn-Latn-pinyin", "gmw/en-US"])
def test_voice_names_espeak_takes_are_accepted(tmp_path: Path, voice: str) -> None:
    book = PromptBook({"en": voice}, {"one": {"en": "1"}})
    assert build(book, tmp_path, progress=False).built == ["en/one"]


@pytest.mark.parametrize("voice", ["en-usx", "zzz", "en-us+nosuchvariant"])
def test_voice_names_espeak_would_guess_are_refused(tmp_path: Path, voice: str) -> None:
    with pytest.raises(ConfigError, match="no voice"):
        build(PromptBook({"en": voice}, {"one": {"en": "1"}}), tmp_path, progress=False)
