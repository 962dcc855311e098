"""HTTP infrastructure on twisted.web: the site, auth tokens, sessions, signatures, JSON resources.

No feature lives here: the SMS webhook, click-to-call and the agent page are
in their features' packages and are added to the site by the composition root.
"""

from ivr.web.auth import hash_token, key_matches, new_token, token_matches
from ivr.web.resources import JsonResource, read_body, write_json
from ivr.web.site import WebSite, check_secrets

__all__ = ["JsonResource", "WebSite", "check_secrets", "hash_token", "key_matches", "new_token", "read_body",
           "token_matches", "write_json"]
