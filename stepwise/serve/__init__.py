"""`stepwise serve`: an HTTP service over the same Predictor the CLI uses.

    settings.py  the server's limits and switches, validated once
    batcher.py   dynamic micro-batching: concurrent requests merged into one forward pass
    metrics.py   Prometheus metrics in the app's own registry
    app.py       the FastAPI app: endpoints, auth, body limit, one-line JSON errors
"""
