"""The entry points: Prefect flows, the `narrator` command, the composition root, the stack.

Flows sequence tasks and hold no logic of their own (chapter.py, batch.py, map_chunks.py);
the CLI (cli/) and the stack (stack.py) start them; services.py builds what they use.
"""
