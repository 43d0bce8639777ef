"""Serving the second self: an OpenAI-compatible HTTP API with our own routes, an MCP server and a web app.

    tokens.py   API tokens with scopes, stored hashed
    uploads.py  where uploaded files and notes land (names sanitized, sizes capped, atomic writes)
    jobs.py     the background worker for long jobs (ingest, build, train), persisted in the database
    limits.py   per-token rate limits and the model gate (bounded queue: 429/503 instead of piling up)
    app.py      the FastAPI application: guards, typed errors → OpenAI errors, the routers mounted together
    auth.py     who is calling: bearer token, scopes, role confinement (the dependencies every route declares)
    state.py    ServeOptions and ServerState, shared by the routes; responses.py: OpenAI-shaped errors
    openai_api.py  the OpenAI wire format (/v1), at this edge only
    routes_*.py    /api, one module per resource (memory, profile, conversations, jobs, training, settings,
                   roles, prefill, bridge, spaces); they import auth/state/responses, never app.py
    mcp.py      the MCP server (official SDK): stdio, and streamable HTTP behind the same tokens
    server.py   running the app with uvicorn (CLI and tests)
    persons.py, app_persons.py, mcp_persons.py, jobs_fair.py, admin_tokens.py
                `serve --all-persons`: every person on one server, the token picks the person; the server's
                admin token creates and removes persons; one job worker takes the persons in turn
    web/        the web app: static files, no build step, no Node at run time

Nothing here is imported by the CLI until `serve`, `mcp` or `token` runs.
"""
