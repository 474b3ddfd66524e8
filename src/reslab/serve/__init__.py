"""Serving a trained network over HTTP (`reslab serve`) and load-testing it (`reslab bench serve`).

Needs the `serve` extra (`pip install reslab[serve]`): Starlette, uvicorn, prometheus-client,
python-multipart, and httpx for the benchmark. This package's modules import them at the top;
`reslab.serve.commands` does not, so `reslab --help` works without them.
"""
