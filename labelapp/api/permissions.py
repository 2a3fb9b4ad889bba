"""The token-scope check for every API view: a view names the scope it needs (`token_scope`), and a
request made with a token passes only if `services.tokens.token_allows` says so. Session requests
(browsers) are not scoped: the account's own permissions apply, as everywhere.
"""

from __future__ import annotations

from rest_framework.permissions import SAFE_METHODS, BasePermission, IsAdminUser

from labelapp.models import ApiToken
from labelapp.services.tokens import token_allows

STRICTEST_SCOPE = "admin"  # for a view that forgot to name one


class TokenScope(BasePermission):
    def has_permission(self, request, view) -> bool:
        token = request.auth
        if not isinstance(token, ApiToken):
            return True
        scope = getattr(view, "token_scope", STRICTEST_SCOPE)
        if token_allows(token=token, scope=scope, safe=request.method in SAFE_METHODS):
            return True
        self.message = (
            f"This token lacks the '{scope}' scope needed here (it has: {', '.join(token.scopes) or 'none'})."
        )
        return False


STAFF = [IsAdminUser, TokenScope]
