"""The pipeline: its steps (Prefect tasks) and the parts they are made of.

Steps: text/ (phase 1), chunk_generation (phase 2), audio, verify, validation, encode,
reports, artifacts (phase 3). Parts: backends/, cache, storage, loudness, subtitles, cast,
voice_library, voice_resolution, options, settings. docs/ARCHITECTURE.md maps them.
"""
