"""Screen pop: the agent sees who is calling and why the moment their phone rings."""

from ivr.screenpop.cards import CallContext, Card, CardBuilder
from ivr.screenpop.hub import PopHub, Stream
from ivr.screenpop.watcher import ScreenPop

__all__ = ["CallContext", "Card", "CardBuilder", "PopHub", "ScreenPop", "Stream"]
