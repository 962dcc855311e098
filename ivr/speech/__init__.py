"""Speech menus: grammars, the recogniser interface, voice activity and the built-in vosk engine."""

from ivr.speech.grammar import SpeechGrammar, normalise
from ivr.speech.recognizer import Outcome, Recognizer, SpeechResult
from ivr.speech.vad import EnergyVAD, VADSettings

__all__ = ["EnergyVAD", "Outcome", "Recognizer", "SpeechGrammar", "SpeechResult", "VADSettings", "normalise"]
