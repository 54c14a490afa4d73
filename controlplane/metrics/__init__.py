"""Prometheus metrics of the web tier and the workers (docs/deploy.md, "What to monitor").

`instruments` holds the counters and histograms the code paths update, `state` the gauges
read from PostgreSQL and Redis at scrape time, `views` the web tier's /metrics, `asgi`
the per-request counter and `worker` the Celery signals and the worker's own endpoint.
"""
