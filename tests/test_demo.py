"""`make demo`'s two modes run to the end and report what they measured; the streaming one serves the
dashboard while it runs."""

from streams.cli import main


def test_streaming_demo_runs_end_to_end(capsys):
    from streams.config import default_model
    from streams.infra import free_port

    port = free_port()
    assert main(["demo", "--minutes", "3", "--symbols", "2", "--seed", "3", "--dashboard-port", str(port)]) == 0
    out = capsys.readouterr().out
    assert f"dashboard: http://127.0.0.1:{port}/" in out  # it answered while the demo ran
    served = "orderflow-gpt:" if default_model().startswith("generative:") else "baseline-har-ewma:"
    assert "records committed" in out and served in out  # the forecasts in Redis name the demo's model
    assert "worker and servers stopped" in out


def test_offline_demo_round_trip_has_no_differing_rows(capsys):
    assert main(["demo", "--offline", "--messages", "3000"]) == 0
    assert "0 rows differ from the ITCH book" in capsys.readouterr().out
