"""Prometheus metrics under the names existing dashboards scrape, in a registry owned by one app instance.

A per-app ``CollectorRegistry`` lets tests build many apps in one process without the global
registry's duplicate-name errors.
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, Info

_LATENCY_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 20, 40, 80, 160, 320, 640)


class Metrics:
    """All gateway metrics; one instance per app."""

    def __init__(self, version: str, backend: str, model_id: str) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        r = self.registry
        self.http_requests = Counter(
            "http_requests_total", "HTTP requests", ["method", "endpoint", "status"], registry=r
        )
        self.http_duration = Histogram(
            "http_request_duration_seconds", "HTTP request latency", ["method", "endpoint"], registry=r
        )
        self.predict_requests = Counter(
            "predict_requests_total", "Predictions by outcome", ["status", "format"], registry=r
        )
        self.predict_duration = Histogram(
            "predict_duration_seconds", "End-to-end prediction time", buckets=_LATENCY_BUCKETS, registry=r
        )
        self.stage_duration = Histogram(
            "predict_stage_duration_seconds",
            "Time per prediction stage",
            ["stage"],
            buckets=_LATENCY_BUCKETS,
            registry=r,
        )
        self.active_tasks = Gauge("active_tasks", "Predictions in flight or waiting for a slot", registry=r)
        self.queued_jobs = Gauge("queued_jobs", "Async jobs waiting or running", registry=r)
        self.app_info = Info("app", "Gateway build and backend", registry=r)
        self.app_info.info({"version": version, "backend": backend, "model_id": model_id})
        self.input_size = Gauge(
            "input_size_info", "Size of the last accepted upload", ["dimension"], registry=r
        )
        self.cache_hits = Counter("cache_hits_total", "Result cache hits", registry=r)
        self.cache_misses = Counter("cache_misses_total", "Result cache misses", registry=r)
        self.redis_errors = Counter(
            "cache_redis_errors_total", "Redis failures (requests were served without the cache)", registry=r
        )
        self.rejected = Counter(
            "admission_rejected_total",
            "Requests refused by admission control or rate limits",
            ["reason"],
            registry=r,
        )
        self.backend_endpoint_requests = Counter(
            "backend_endpoint_requests_total",
            "Inference calls per Triton endpoint (host:port) by outcome: ok, retried (on another), error",
            ["endpoint", "outcome"],
            registry=r,
        )
        self.limits_redis_errors = Counter(
            "limits_redis_errors_total",
            "Failures of the shared-limits Redis (the replica limited alone meanwhile)",
            ["what"],
            registry=r,
        )
        self.limits_redis_up = Gauge(
            "limits_redis_up",
            "1 while the shared-limits Redis answers (0 when down or not configured)",
            registry=r,
        )
        self.webhook_deliveries = Counter(
            "webhook_deliveries_total", "Webhook delivery attempts by outcome", ["result"], registry=r
        )
