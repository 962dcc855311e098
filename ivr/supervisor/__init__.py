"""The supervisor's view: a live wallboard, charts, and acting on the queues.

* :mod:`ivr.supervisor.board` -- the one shared computation (AMI QueueStatus, queue
  events, today's figures) pushed to every open page;
* :mod:`ivr.supervisor.live` -- reading Asterisk's QueueStatus answer;
* :mod:`ivr.supervisor.figures` -- today's figures and chart series, through :mod:`ivr.reports`;
* :mod:`ivr.supervisor.actions` -- pause/unpause, add/remove a member over AMI, audited;
* :mod:`ivr.supervisor.page` -- ``/supervisor``: login, page, event stream, chart and action APIs;
* ``pages/`` and ``static/`` -- the page, its script and style, Apache ECharts (vendored).

Supervisors are agents with the role ``supervisor`` (``ivr agents add CODE --role
supervisor``); they log in with their API token as agents do. Built by the
composition root (:mod:`ivr.server`), registered as the built-in ``ivr.supervisor``.
"""
