"""`make demo`: the whole product on loopback (Prometheus, Alertmanager, a scripted exporter,
the receiver, an SMTP sink) following a short incident script."""
