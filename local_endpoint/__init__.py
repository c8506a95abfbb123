"""The local RunPod-compatible endpoint and its fault drills: development and test tools
around the real worker handler, kept out of the worker image."""
