"""POST /oauth/token: OAuth 2.0 client credentials through django-oauth-toolkit. The client id
and secret are taken as SAP's token service takes them: HTTP Basic, the form body, or the URL's
query string (which oauthlib refuses on a POST, so they move into the body first)."""

from __future__ import annotations

from django.http import HttpRequest, HttpResponse, QueryDict
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_POST
from oauth2_provider.views import TokenView

_token_view = TokenView.as_view()


@csrf_exempt
@require_POST
def token(request: HttpRequest) -> HttpResponse:
    if request.GET:
        merged = request.POST.copy()
        for key, values in request.GET.lists():
            if key not in merged:
                merged.setlist(key, values)
        request.POST = merged  # type: ignore[assignment]  # the stubs call it immutable
        request.GET = QueryDict()
        request.META["QUERY_STRING"] = ""
    return _token_view(request)
