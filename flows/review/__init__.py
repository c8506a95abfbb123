"""The review page: hear a narrated chapter chunk by chunk, redo, choose or keep takes.

`view.py` reads what the page shows from the published files; `app.py` serves it with the
page in `static/` and runs redo_chunks (flows/redo.py) for what the page asks.
"""
