"""Every API answer is JSON, whatever the client's Accept header says.

DRF's default answered `Accept: text/html` (a browser, `curl -H`) with its browsable HTML page, errors
included, against the documented JSON error body; with JSON as the only renderer it answered 406
instead, hiding the real answer (a 401, a 400 naming the bad parameter). An Accept that JSON does not
satisfy now gets JSON all the same. An unknown `?format=` stays DRF's 404.
"""

from __future__ import annotations

from rest_framework.exceptions import NotAcceptable
from rest_framework.negotiation import DefaultContentNegotiation


class JSONWhateverAccepted(DefaultContentNegotiation):
    def select_renderer(self, request, renderers, format_suffix=None):
        try:
            return super().select_renderer(request, renderers, format_suffix)
        except NotAcceptable:
            return renderers[0], renderers[0].media_type
