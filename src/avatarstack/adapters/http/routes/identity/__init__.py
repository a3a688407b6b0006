"""Identity routes: /api/v1/auth, /api/v1/users/me, /api/v1/admin (docs/identity.md,
docs/api.md).

``auth`` (accounts, login, sessions), ``oauth`` (external logins) and ``account`` (the caller's
profile and sessions, administration) declare the routes; ``models`` holds the request and
response bodies they share.
"""

from avatarstack.adapters.http.routes.identity import account, auth, oauth

ROUTES = [*auth.ROUTES, *oauth.ROUTES, *account.ROUTES]
