"""The ASGI application: `uvicorn app.main:app`.

Importing it runs the start-up checks of `app.startup` in each server process: a configuration
that cannot serve correctly ends the process with one line on stderr and exit status 3."""

from app.startup import checked_app

app = checked_app()
