"""``rankcore serve``: the Personalize runtime wire protocol over HTTP (Starlette/uvicorn)."""
