"""Routing: which handler serves a call, and where it goes when we cannot."""

from ivr.routing.router import CallOutcome, CallStep, Fallback, Handler, Route, Router

__all__ = ["CallOutcome", "CallStep", "Fallback", "Handler", "Route", "Router"]
