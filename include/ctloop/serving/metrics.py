"""Prometheus metrics of one server process (its own registry, so tests can run several apps)."""

from __future__ import annotations

import os
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from ctloop.serving.logwriter import LogWriter

LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.0075, 0.01, 0.015, 0.02, 0.03, 0.05, 0.075, 0.1, 0.25, 0.5, 1.0, 2.5)
SCORE_BUCKETS = tuple(i / 10 for i in range(1, 10))
BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024)


class ServingMetrics:
    def __init__(self) -> None:
        os.environ.setdefault("PROMETHEUS_DISABLE_CREATED_SERIES", "true")  # no *_created series per label set
        from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

        self.registry = CollectorRegistry()
        r = self.registry
        self.requests = Counter("ctloop_serving_requests", "HTTP requests to /predict by outcome",
                                ["model_version", "route", "outcome"], registry=r)
        self.records = Counter("ctloop_serving_records", "records scored (a batch request counts each record)",
                               ["model_version", "route"], registry=r)
        self.errors = Counter("ctloop_serving_errors", "scoring failures by model version and route",
                              ["model_version", "route"], registry=r)
        self.latency = Histogram("ctloop_serving_request_latency_seconds", "time from request to response",
                                 ["model_version", "route"], buckets=LATENCY_BUCKETS, registry=r)
        self.scores = Histogram("ctloop_serving_prediction_score", "scores served (and shadow-scored)",
                                ["model_version", "route"], buckets=SCORE_BUCKETS, registry=r)
        self.predictions = Counter("ctloop_serving_predictions", "decisions served", ["model_version", "route",
                                                                                      "prediction"], registry=r)
        self.batch_size = Histogram("ctloop_serving_batch_records", "records per predict_proba call",
                                    buckets=BATCH_BUCKETS, registry=r)
        self.rejected = Counter("ctloop_serving_rejected_requests", "requests refused before scoring",
                                ["status"], registry=r)
        self.internal_errors = Counter("ctloop_serving_internal_errors", "requests answered 500 by an error "
                                       "that escaped a handler", ["path"], registry=r)
        self.swaps = Counter("ctloop_serving_model_swaps", "models loaded, warmed up and swapped in", ["alias"],
                             registry=r)
        self.load_errors = Counter("ctloop_serving_model_load_errors", "models that failed to load or warm up",
                                   ["alias"], registry=r)
        self.feedback = Counter("ctloop_serving_feedback_labels", "labels received on POST /feedback, by whether "
                                "this server answered the request recently", ["known"], registry=r)
        self.canary_stops = Counter("ctloop_serving_canary_stops", "canaries stopped by the guard", registry=r)
        self.canary_fraction = Gauge("ctloop_serving_canary_fraction", "share of keys routed to the canary",
                                     registry=r)
        self.model_info = Gauge("ctloop_serving_model_version_info", "1 for the version each alias serves",
                                ["alias", "model_version"], registry=r)
        self.ready = Gauge("ctloop_serving_ready", "1 when a warmed-up champion is serving", registry=r)
        self.log_depth = Gauge("ctloop_serving_log_queue_rows", "prediction-log rows waiting to be written",
                               registry=r)
        self.log_dropped = Gauge("ctloop_serving_log_dropped_rows_total",
                                 "prediction-log rows dropped because the queue was full", registry=r)
        self.log_written = Gauge("ctloop_serving_log_written_rows_total", "prediction-log rows written",
                                 registry=r)
        self.log_errors = Gauge("ctloop_serving_log_write_errors_total", "failed prediction-log writes",
                                registry=r)
        self.labels_written = Gauge("ctloop_serving_labels_written_rows_total", "labels from /feedback written",
                                    registry=r)
        self.labels_dropped = Gauge("ctloop_serving_labels_dropped_rows_total",
                                    "labels from /feedback dropped (queue full at shutdown)", registry=r)
        self.log_dead_lettered = Gauge("ctloop_serving_log_dead_lettered_rows_total",
                                       "prediction-log rows that could not be written, kept in the dead-letter "
                                       "file with the reason", registry=r)

    def render(self, writer: LogWriter | None, labels: LogWriter | None = None) -> bytes:
        from prometheus_client import generate_latest

        if writer is not None:  # read at scrape time from the writer's own counters
            self.log_depth.set(writer.depth)
            self.log_dropped.set(writer.dropped)
            self.log_written.set(writer.written)
            self.log_errors.set(writer.write_errors)
            self.log_dead_lettered.set(writer.dead_lettered)
        if labels is not None:
            self.labels_written.set(labels.written)
            self.labels_dropped.set(labels.dropped)
        return generate_latest(self.registry)
