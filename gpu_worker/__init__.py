"""The RunPod worker: synthesis, validation and best-of-N selection for one chunk.

Everything here ships in the GPU image. It imports neither prefect nor `tasks`, so it can
be built, tested and deployed on its own (ARCHITECTURE.md: flows -> tasks -> gpu_worker).
"""

__version__ = "0.1.0"
