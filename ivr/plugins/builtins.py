"""The one list of built-in plugins.

Built-in features are plugins like any admin's: they use only the ``ivr_*``
hooks, ``[plugins] disable`` takes their names, and ``ivr plugins list`` shows
them. A built-in is either a module whose functions are hook implementations
(registered when the plugins load), or a class whose instance needs the
server's services (the database, the AMI client): ``ivr serve`` builds those
once the database is open and registers them under the same name.

The names are what sites write in ``[plugins] disable``; they stay stable
even when the code behind them moves.
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["BUILTIN_PLUGINS", "BuiltinPlugin"]


@dataclass(frozen=True, slots=True)
class BuiltinPlugin:
    """One built-in feature: its plugin name and where its hooks live."""

    name: str
    #: ``package.module`` (its functions are the hooks) or ``package.module:Class`` (built by ivr serve).
    target: str
    summary: str

    @property
    def needs_server(self) -> bool:
        """True for a class that ``ivr serve`` builds with its services."""
        return ":" in self.target


BUILTIN_PLUGINS: tuple[BuiltinPlugin, ...] = (
    BuiltinPlugin("ivr.plugins.diagnostics", "ivr.plugins.diagnostics",
                  "the key-echo route, for testing a line"),
    BuiltinPlugin("ivr.plugins.demo_hotline", "ivr.plugins.demo_hotline",
                  "the demo hotline: language choice, main menu, after-sales"),
    BuiltinPlugin("ivr.plugins.contact_history", "ivr.history.plugin:ContactHistory",
                  "records every call into the contact history"),
    BuiltinPlugin("ivr.history.human_part", "ivr.history.human_part:HumanPartTracker",
                  "who answered, how long the caller waited and talked (AMI queue events)"),
    BuiltinPlugin("ivr.plugins.customer_directory", "ivr.customers.plugin:CustomerDirectory",
                  "finds callers in the customers table"),
    BuiltinPlugin("ivr.callbacks.outbox", "ivr.callbacks.outbox:SmsOutbox",
                  "stores outgoing SMS in the sms_outbox table (the last ivr_send_sms)"),
    BuiltinPlugin("ivr.callbacks.sip_sms", "ivr.callbacks.sip_sms:SipSms",
                  "SMS over SIP MESSAGE: sends the outbox with AMI MessageSend, takes SMS from [ivr-sms-in]"),
    BuiltinPlugin("ivr.callbacks.caller_requests", "ivr.callbacks.caller_requests:CallerCallbacks",
                  "menu callback options: stores the caller's request as a follow-up"),
    BuiltinPlugin("ivr.callbacks.service", "ivr.callbacks.service:FollowUpService",
                  "opens follow-ups for other features, plans dated dispositions, escalates overdue ones"),
    BuiltinPlugin("ivr.plugins.vosk_speech", "ivr.plugins.vosk_speech:VoskPlugin",
                  "vosk speech recognition for the languages in [speech] models"),
    BuiltinPlugin("ivr.plugins.sphinx_speech", "ivr.plugins.sphinx_speech:SphinxPlugin",
                  "pocketsphinx English speech recognition ([speech] models en = \"pocketsphinx\")"),
    BuiltinPlugin("ivr.screenpop", "ivr.screenpop.watcher:ScreenPop",
                  "cards on the agents' pages when their phone rings"),
    BuiltinPlugin("ivr.supervisor", "ivr.supervisor.board:Wallboard",
                  "the supervisor's live wallboard, charts and queue actions (/supervisor)"),
    BuiltinPlugin("ivr.survey", "ivr.survey.plugin:SurveyPlugin",
                  "the post-call satisfaction survey ([survey] rate) and recovery of unhappy customers"),
    BuiltinPlugin("ivr.complaints", "ivr.complaints.plugin:Complaints",
                  "complaint cases from menus, SMS keywords and agents' dispositions"),
)
