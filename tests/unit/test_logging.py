"""Logs never carry secrets, bind the request id, and switch format by environment."""

from __future__ import annotations

import io
import json

import pytest
import structlog

from avatarstack.adapters.http.pipeline import CURRENT_REQUEST_ID
from avatarstack.bootstrap.logging import BackgroundWriter, configure_logging
from avatarstack.bootstrap.settings import Settings

STRONG = "k" * 48


def production() -> Settings:
    return Settings(
        env="production",
        secret_key=STRONG,
        public_url="https://x.example",
        mail={"backend": "smtp", "smtp_host": "smtp.example"},
    )


def test_production_logs_are_json_lines_with_secret_values_masked() -> None:
    stream = io.StringIO()
    configure_logging(production(), stream=stream)
    structlog.get_logger("t").info(
        "user_login", password="hunter2", refresh_token="rt", nested={"api_key": "k1", "ok": 1}
    )
    line = json.loads(stream.getvalue().strip().splitlines()[-1])
    assert line["event"] == "user_login"
    assert line["password"] == "***"
    assert line["refresh_token"] == "***"
    assert line["nested"] == {"api_key": "***", "ok": 1}
    assert "hunter2" not in stream.getvalue()


def test_development_logs_are_readable_console_lines() -> None:
    stream = io.StringIO()
    configure_logging(Settings(), stream=stream)
    structlog.get_logger("t").info("something_happened", answer=42)
    output = stream.getvalue()
    assert "something_happened" in output
    assert "answer=42" in output
    assert not output.lstrip().startswith("{")


def test_bound_request_ids_appear_on_every_line() -> None:
    stream = io.StringIO()
    configure_logging(production(), stream=stream)
    structlog.contextvars.bind_contextvars(request_id="req-1")
    try:
        structlog.get_logger("t").info("inside_request")
    finally:
        structlog.contextvars.clear_contextvars()
    assert json.loads(stream.getvalue().splitlines()[-1])["request_id"] == "req-1"


def test_the_current_http_request_id_is_added_to_log_lines() -> None:
    stream = io.StringIO()
    configure_logging(production(), stream=stream)
    token = CURRENT_REQUEST_ID.set("req-2")
    try:
        structlog.get_logger("t").info("while_handling")
    finally:
        CURRENT_REQUEST_ID.reset(token)
    structlog.get_logger("t").info("after_the_request")
    first, second = (json.loads(line) for line in stream.getvalue().splitlines()[-2:])
    assert first["request_id"] == "req-2"
    assert "request_id" not in second


def test_a_background_writer_writes_every_line_in_order_from_its_thread() -> None:
    """What standard error gets: the event loop only queues a line and the writer thread writes
    it, so a slow disk or a full pipe does not stall every request of the instance."""
    target = io.StringIO()
    writer = BackgroundWriter(target)
    configure_logging(production(), stream=writer)  # type: ignore[arg-type]
    log = structlog.get_logger("t")
    for number in range(200):
        log.warning("line", number=number, token="tk")
    writer.drain()
    lines = [json.loads(line) for line in target.getvalue().splitlines()]
    assert [line["number"] for line in lines] == list(range(200))
    assert {line["token"] for line in lines} == {"***"}
    writer.close()


def test_a_failing_command_prints_its_error_after_the_lines_it_logged(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Log lines go out through a writer thread while click prints the error itself: a warning
    logged just before the failure must not land after the one-line error (CI saw serve's
    'database not ready' warning follow its 'Error: …' line)."""
    import time

    import click
    from click.testing import CliRunner

    from avatarstack.bootstrap import logging as logging_module
    from avatarstack.bootstrap.cli.context import AvatarstackGroup

    class SlowStream(io.StringIO):
        def write(self, text: str) -> int:
            time.sleep(0.2)  # a slow terminal: the thread is behind when the command fails
            return super().write(text)

    out = SlowStream()
    writer = BackgroundWriter(out)  # type: ignore[arg-type]
    monkeypatch.setitem(logging_module._writers, id(out), writer)

    @click.group(cls=AvatarstackGroup)
    def group() -> None:
        pass

    @group.command()
    def fails() -> None:
        writer.write("warning: not ready\n")
        raise click.ClickException("the database is unreachable")

    result = CliRunner().invoke(group, ["fails"])
    assert result.exit_code == 1
    # the error is printed only once the writer has written the warning
    assert out.getvalue() == "warning: not ready\n"
    writer.close()
