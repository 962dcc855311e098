"""Routing: which handler serves a call, and where it goes when we cannot."""

from ivr.routing.router import Fallback, Handler, Route, Router

__all__ = ["Fallback", "Handler", "Route", "Router"]
