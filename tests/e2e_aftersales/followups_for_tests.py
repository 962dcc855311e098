"""A stand-in for the follow-up service in end-to-end tests: it keeps every request it is asked.

Each ``ivr_open_followup`` request is appended as one JSON line to the file named by
``IVR_TEST_FOLLOWUPS`` and answered with an id (4000 + its line number), as the real
service would answer with a follow-up's id.
"""

from __future__ import annotations

import dataclasses
import json
import os

from ivr.plugins.hookspecs import hookimpl
from ivr.plugins.requests import FollowUpRequest


@hookimpl
def ivr_open_followup(request: FollowUpRequest) -> int:
    path = os.environ["IVR_TEST_FOLLOWUPS"]
    record = {k: (v.isoformat() if hasattr(v, "isoformat") else v)
              for k, v in dataclasses.asdict(request).items()}
    with open(path, "a", encoding="utf-8") as handle:
        handle.write(json.dumps(record, ensure_ascii=False) + "\n")
    with open(path, encoding="utf-8") as handle:
        return 4000 + sum(1 for _ in handle)
