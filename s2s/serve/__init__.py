"""`s2s serve`: translation, attention and captions over HTTP, and the attention explorer.

Built on FastAPI (Starlette under uvicorn): the request models that validate every field also
produce the OpenAPI schema (`/openapi.json`), so the schema and the checks cannot drift apart,
and a wrong field comes back as a 4xx naming it. `/docs` is off because Swagger UI loads its
scripts from a CDN and the service must work offline. Modules: `batching` (one inference worker
per model that merges concurrent requests), `guards` (API key, body size, image decoding),
`app` (the routes), `static/` (the explorer page: plain HTML, CSS and JavaScript).
"""
