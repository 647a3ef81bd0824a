"""Pipeline stage: rulegen — rule specs → Prometheus recording/alerting rules + promtool tests.

Standalone on purpose: it imports nothing from the service (app, store, ...), so `receiver rules`
runs in CI without the service's dependencies being configured.
"""
