"""Knowledge-base routes: /api/v1/kb (docs/knowledge.md, docs/api.md). Editors and admins write
(``kb:write``); every signed-in member may read and search (``kb:read``).

``documents`` (uploads, versions, ingestion jobs) and ``generations`` (index builds, the golden
set, search) declare the routes; ``models`` holds the request and response bodies.
"""

from avatarstack.adapters.http.routes.knowledge import documents, generations

ROUTES = [*documents.ROUTES, *generations.ROUTES]
