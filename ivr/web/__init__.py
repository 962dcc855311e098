"""The HTTP API on twisted.web: the site (:mod:`ivr.web.site`), JSON resources, the SMS webhook."""

from ivr.web.auth import hash_token, key_matches, new_token, token_matches
from ivr.web.resources import JsonResource, read_body, write_json
from ivr.web.site import WebSite, build_web

__all__ = ["JsonResource", "WebSite", "build_web", "hash_token", "key_matches", "new_token", "read_body",
           "token_matches", "write_json"]
