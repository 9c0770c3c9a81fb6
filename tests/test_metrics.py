"""The exposition without a network (issue 13): values past 10^6 come out exact (the old
``{value:g}`` printed 3463229 as 3.46323e+06), counter names keep their ``_total``, an info
metric is ``skipd_build_info``, and label values are escaped; the witness is
prometheus_client's own parser reading the text back."""

from __future__ import annotations

from prometheus_client.parser import text_string_to_metric_families

from skip.daemon.metrics import MetricsServer


def test_large_counters_are_exact_and_names_follow_conventions() -> None:
    samples = [
        ("skipd_peer_sent_bytes_total", "counter", "bytes", {"peer": 'we"ird\\name'}, 3463229),
        ("skipd_peer_sent_bytes_total", "counter", "bytes", {"peer": "b"}, 123456789012),
        ("skipd_start_time_seconds", "gauge", "start", {}, 1700000000.25),
        ("skipd_build_info", "info", "version", {"version": "0.1.0"}, 1),
    ]
    server = MetricsServer("127.0.0.1", 0, lambda: samples)
    body, content_type = server.document("text/plain")
    text = body.decode()
    # Go's float formatting (what Prometheus itself writes): every digit kept
    assert "3.463229e+06" in text and "3.46323e+06" not in text
    assert content_type.startswith("text/plain")
    parsed = {(s.name, tuple(sorted(s.labels.items()))): s.value
              for f in text_string_to_metric_families(text) for s in f.samples}
    assert parsed[("skipd_peer_sent_bytes_total", (("peer", 'we"ird\\name'),))] == 3463229
    assert parsed[("skipd_peer_sent_bytes_total", (("peer", "b"),))] == 123456789012
    assert parsed[("skipd_start_time_seconds", ())] == 1700000000.25
    assert parsed[("skipd_build_info", (("version", "0.1.0"),))] == 1
    assert "# TYPE skipd_peer_sent_bytes_total counter" in text
    assert "process_" in text  # the process collector is registered
