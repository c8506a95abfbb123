"""Development tools kept out of the worker image: a local RunPod endpoint, fault drills."""
