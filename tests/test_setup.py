from __future__ import annotations

import io
import logging
import os
from pathlib import Path
from typing import Any

import orjson
import pytest

import aind_log_utils
from aind_log_utils import log as log_module
from aind_log_utils import setup_logging
from aind_log_utils._args import resolve_log_file
from aind_log_utils._redact import MASK
from aind_log_utils.testing import read_jsonl

ACQ = "123456_2026-01-01_23-00-00"


def setup_quiet(tmp_path: Path, *args: Any, **kwargs: Any) -> aind_log_utils.LoggingSession:
    kwargs.setdefault("console", False)
    kwargs.setdefault("log_file", tmp_path / "run.jsonl")
    kwargs.setdefault("handle_sigterm", False)
    return setup_logging(*args, **kwargs)


def test_new_form_writes_standard_lines(tmp_path: Path) -> None:
    session = setup_quiet(tmp_path, "my-capsule", subject_id="123456", acquisition_name=ACQ)
    logging.getLogger("capsule").info("frame %d acquired", 7, extra={"camera": "cam-01"})
    session.close()
    lines = read_jsonl(tmp_path / "run.jsonl")
    assert [r["message"] for r in lines] == ["Starting", "frame 7 acquired", "Stopping"]
    frame = lines[1]
    assert frame["camera"] == "cam-01"
    assert frame["subject_id"] == "123456" and frame["acquisition_name"] == ACQ
    assert frame["process_name"] == "my-capsule" and frame["hostname"]
    assert len(frame["log_session"]) == 7
    assert "undefined" not in (tmp_path / "run.jsonl").read_text()


def test_import_paths_of_02x_and_new() -> None:
    assert aind_log_utils.setup_logging is log_module.setup_logging
    from aind_log_utils.log import setup_logging as via_module

    assert via_module is setup_logging


def test_02x_positional_call_with_asset_name(tmp_path: Path) -> None:
    session = log_module.setup_logging(
        "my-capsule",
        "123456",
        "ecephys_123456_2026-01-01_23-00-00",
        True,
        False,
        console=False,
        log_file=tmp_path / "run.jsonl",
        handle_sigterm=False,
    )
    logging.getLogger("x").info("hello")
    session.close()
    line = read_jsonl(tmp_path / "run.jsonl")[1]
    assert line["asset_name"] == "ecephys_123456_2026-01-01_23-00-00"
    assert line["acquisition_name"] == ACQ and line["subject_id"] == "123456"


def test_non_aind_asset_name_kept_as_is(tmp_path: Path) -> None:
    session = setup_quiet(tmp_path, "c", asset_name="my-asset")
    logging.getLogger("x").info("hello")
    session.close()
    line = read_jsonl(tmp_path / "run.jsonl")[1]
    assert line["asset_name"] == "my-asset" and "acquisition_name" not in line


def test_deprecated_aliases_warn_with_new_name(tmp_path: Path) -> None:
    with pytest.warns(FutureWarning, match="'mouse_id' is deprecated, use 'subject_id'"):
        session = setup_quiet(tmp_path, "c", mouse_id="123456")
    assert session.fields["subject_id"] == "123456"
    with pytest.warns(FutureWarning, match="'session_name' is deprecated, use 'asset_name'"):
        session = setup_quiet(tmp_path, "c", session_name="ecephys_123456_2026-01-01_23-00-00")
    assert session.fields["acquisition_name"] == ACQ


def test_unknown_keyword_warns_naming_it_and_does_not_crash(tmp_path: Path) -> None:
    with pytest.warns(UserWarning, match="colour"):
        session = setup_quiet(tmp_path, "c", colour="blue")
    assert not session.closed


def test_extra_subject_id_on_a_call_wins(tmp_path: Path) -> None:
    session = setup_quiet(tmp_path, "c", subject_id="123456")
    logging.getLogger("x").info("other", extra={"subject_id": "654321"})
    session.close()
    assert read_jsonl(tmp_path / "run.jsonl")[1]["subject_id"] == "654321"


def test_second_call_replaces_never_duplicates_and_keeps_foreign_handlers(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    foreign = logging.StreamHandler(io.StringIO())
    logging.getLogger().addHandler(foreign)
    try:
        setup_quiet(tmp_path, "c")
        session = setup_quiet(tmp_path, "c")
        with caplog.at_level(logging.INFO):
            logging.getLogger("x").info("once")
        ours = [h for h in logging.getLogger().handlers if h.get_name() == "aind_log_utils"]
        assert len(ours) == 1
        assert foreign in logging.getLogger().handlers
        assert "once" in caplog.text
        session.close()
        messages = [r["message"] for r in read_jsonl(tmp_path / "run.jsonl")]
        assert messages.count("once") == 1
    finally:
        logging.getLogger().removeHandler(foreign)


def test_disable_existing_loggers(tmp_path: Path) -> None:
    early = logging.getLogger("early.library")
    session = setup_quiet(tmp_path, "c")
    early.warning("kept")
    session = setup_quiet(tmp_path, "c", disable_existing_loggers=True)
    early.warning("silenced")
    session.close()
    messages = [r["message"] for r in read_jsonl(tmp_path / "run.jsonl")]
    assert "kept" in messages and "silenced" not in messages


def test_send_start_log_false_writes_neither_line(tmp_path: Path) -> None:
    session = setup_quiet(tmp_path, "c", send_start_log=False)
    logging.getLogger("x").info("only")
    session.close()
    assert [r["message"] for r in read_jsonl(tmp_path / "run.jsonl")] == ["only"]


def test_stop_line_is_the_runs_canonical_line(tmp_path: Path) -> None:
    session = setup_quiet(tmp_path, "c")
    logging.getLogger("x").error("first problem")
    logging.getLogger("x").error("second problem")
    session.add(frames=12)
    session.close()
    stop = read_jsonl(tmp_path / "run.jsonl")[-1]
    assert stop["message"] == "Stopping" and stop["status"] == "success"
    assert stop["event_type"] == "stage_complete"
    assert stop["duration_s"] >= 0
    assert stop["records"] == {"INFO": 1, "ERROR": 2}
    assert stop["first_error"] == "first problem" and stop["frames"] == 12


def test_context_manager_marks_failure(tmp_path: Path) -> None:
    with pytest.raises(RuntimeError), setup_quiet(tmp_path, "c"):
        raise RuntimeError("broke")
    stop = read_jsonl(tmp_path / "run.jsonl")[-1]
    assert stop["status"] == "fail" and stop["level"] == "ERROR"
    assert stop["error_type"] == "RuntimeError" and stop["event_type"] == "stage_failure"


def test_session_handle(tmp_path: Path) -> None:
    session = setup_quiet(tmp_path, "c", level="DEBUG")
    logging.getLogger("x").debug("d")
    assert session.paths == {"file": tmp_path / "run.jsonl"}
    assert session.log_file == tmp_path / "run.jsonl"
    assert session.counts == {"INFO": 1, "DEBUG": 1}
    assert session.flush() is True
    assert session.records_dropped == 0
    assert "c" in repr(session)
    session.close()
    session.close()  # idempotent
    assert session.closed
    assert session.stats()["records"]["DEBUG"] == 1


def test_registered_secrets_never_reach_the_file(tmp_path: Path) -> None:
    session = setup_quiet(tmp_path, "c", secrets=["correct-horse-battery"])
    logging.getLogger("x").info(
        "token is correct-horse-battery", extra={"note": "correct-horse-battery"}
    )
    try:
        raise ValueError("failed with correct-horse-battery")
    except ValueError:
        logging.getLogger("x").exception("oops")
    session.close()
    text = (tmp_path / "run.jsonl").read_text()
    assert "correct-horse-battery" not in text and MASK in text


def test_static_fields_and_their_validation(tmp_path: Path) -> None:
    session = setup_quiet(tmp_path, "c", fields={"team": "physiology"})
    assert session.fields["team"] == "physiology"
    with pytest.raises(ValueError, match="fields"):
        setup_quiet(tmp_path, "c", fields={"subject_id": "1"})


@pytest.mark.parametrize(
    ("kwargs", "name", "error"),
    [
        ({"acquisition_name": "bad"}, "acquisition_name", ValueError),
        ({"acquisition_name": ACQ, "subject_id": "999999"}, "subject_id", ValueError),
        ({"subject_id": "123456", "specimen_id": "999_001"}, "specimen_id", ValueError),
        ({"level": "LOUD"}, "^level: unknown level", ValueError),
        ({"sipe_url": "127.0.0.1:9", "sipe_level": "LOUD"}, "^sipe_level: unknown", ValueError),
        ({"level": True}, "level", TypeError),
        ({"console": "colourful"}, "console", ValueError),
        ({"log_file": 12}, "log_file", TypeError),
        ({"flush_timeout_s": -1}, "flush_timeout_s", ValueError),
        ({"fields": ["x"]}, "fields", TypeError),
        ({"secrets": "single-string"}, "secrets", TypeError),
        ({"secrets": 12345678}, "secrets", TypeError),
        ({"config": 5}, "config", TypeError),
        ({"sinks": "x"}, "sinks", TypeError),
        ({"sinks": [object()]}, "sinks", TypeError),
        ({"loki_url": "http://127.0.0.1:9", "loki_password": 1234}, "loki_password", TypeError),
        (
            {"loki_url": "http://127.0.0.1:9", "loki_bearer_token": 5},
            "loki_bearer_token",
            TypeError,
        ),
        (
            {"loki_url": "http://127.0.0.1:9", "loki_options": {"spool_dir": 5}},
            "spool_dir",
            TypeError,
        ),
        ({"sipe_url": "127.0.0.1:9", "sipe_options": {"spool_dir": []}}, "spool_dir", TypeError),
        ({"cloudwatch": True, "cloudwatch_options": {"spool_dir": 5}}, "spool_dir", TypeError),
        (
            {"loki_url": "http://127.0.0.1:9", "loki_options": {"max_batch_bytes": "big"}},
            "max_batch_bytes",
            TypeError,
        ),
        (
            {"sipe_url": "127.0.0.1:9", "sipe_options": {"retry_start_s": 60.0}},
            "retry_start_s",
            ValueError,
        ),
    ],
)
def test_bad_configuration_raises_naming_the_parameter(
    tmp_path: Path, kwargs: dict[str, Any], name: str, error: type[Exception]
) -> None:
    with pytest.raises(error, match=name):
        setup_quiet(tmp_path, "c", **kwargs)


def test_unwritable_log_path_raises_naming_log_file(tmp_path: Path) -> None:
    (tmp_path / "a-dir").mkdir()
    with pytest.raises(ValueError, match="log_file"):
        setup_quiet(tmp_path, "c", log_file=tmp_path / "a-dir")
    blocker = tmp_path / "file"
    blocker.write_text("x")
    with pytest.raises(ValueError, match="log_file"):
        setup_quiet(tmp_path, "c", log_file=blocker / "sub" / "run.jsonl")


def test_failed_setup_keeps_previous_session(tmp_path: Path) -> None:
    session = setup_quiet(tmp_path, "c")
    with pytest.raises(ValueError):
        setup_quiet(tmp_path, "c", level="LOUD")
    assert not session.closed
    logging.getLogger("x").info("still here")
    session.close()
    assert "still here" in [r["message"] for r in read_jsonl(tmp_path / "run.jsonl")]


def test_default_log_file_places(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    assert resolve_log_file(None, "cap") is None
    monkeypatch.setenv("CO_CAPSULE_ID", "abc")
    assert resolve_log_file(None, "cap") == Path("/results/logs/cap.jsonl")
    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path / "state"))
    path = resolve_log_file(True, "cap")
    assert path is not None and path.name == "cap.jsonl" and str(path).startswith(str(tmp_path))
    assert resolve_log_file(False, "cap") is None


def test_log_file_true_writes_to_user_log_dir(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path / "state"))
    session = setup_logging("cap", console=False, log_file=True, handle_sigterm=False)
    session.close()
    assert session.log_file is not None and session.log_file.exists()
    assert str(session.log_file).startswith(str(tmp_path / "state"))


def test_precedence_args_over_env_over_config_over_discovered(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    config = tmp_path / "aind-log.toml"
    config.write_text(
        '[aind_log_utils]\nlevel = "ERROR"\nsubject_id = "111111"\nrig_id = "from-config"\n'
        'instrument_id = "CONFIG1"\n'
    )
    monkeypatch.setenv("aibs_comp_id", "discovered-rig")
    monkeypatch.setenv("AIND_LOG_CONFIG", str(config))
    monkeypatch.setenv("AIND_LOG_LEVEL", "WARNING")
    monkeypatch.setenv("AIND_SUBJECT_ID", "222222")
    session = setup_quiet(tmp_path, "c", subject_id="333333")
    assert session.level == logging.WARNING  # env beats config
    assert session.fields["subject_id"] == "333333"  # argument beats env
    assert session.fields["rig_id"] == "from-config"  # config beats discovered
    assert session.fields["instrument_id"] == "CONFIG1"
    session.close()
    monkeypatch.delenv("AIND_LOG_LEVEL")
    session = setup_quiet(tmp_path, "c")
    assert session.level == logging.ERROR  # config beats default
    assert session.fields["subject_id"] == "222222"  # env beats config


def test_env_sets_log_file_and_console(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("AIND_LOG_FILE", str(tmp_path / "env.jsonl"))
    monkeypatch.setenv("AIND_LOG_CONSOLE", "json")
    session = setup_logging("c", handle_sigterm=False)
    logging.getLogger("x").info("via env")
    session.close()
    assert "via env" in [r["message"] for r in read_jsonl(tmp_path / "env.jsonl")]
    printed = [orjson.loads(x) for x in capsys.readouterr().out.splitlines()]
    assert "via env" in [r["message"] for r in printed]


def test_yaml_config_and_bad_config(tmp_path: Path) -> None:
    good = tmp_path / "c.yaml"
    good.write_text("level: DEBUG\nuser_id: bobby.b\n")
    session = setup_quiet(tmp_path, "c", config=good)
    assert session.level == logging.DEBUG and session.fields["user_id"] == "bobby.b"
    bad = tmp_path / "bad.yaml"
    bad.write_text("levle: DEBUG\n")
    with pytest.raises(ValueError, match="config: unknown option 'levle'"):
        setup_quiet(tmp_path, "c", config=bad)
    with pytest.raises(ValueError, match="config"):
        setup_quiet(tmp_path, "c", config=tmp_path / "missing.toml")


def test_full_disk_is_counted_not_raised(tmp_path: Path) -> None:
    if not os.path.exists("/dev/full"):
        pytest.skip("no /dev/full on this platform")
    session = setup_logging("c", console=False, log_file="/dev/full", handle_sigterm=False)
    logging.getLogger("x").info("lost to a full disk")
    assert session.records_dropped >= 1
    session.close()


def test_warnings_are_captured_into_the_file(tmp_path: Path) -> None:
    import warnings

    session = setup_quiet(tmp_path, "c")
    warnings.warn("careful now", RuntimeWarning, stacklevel=1)
    session.close()
    records = read_jsonl(tmp_path / "run.jsonl")
    assert any("careful now" in r["message"] and r["level"] == "WARNING" for r in records)
