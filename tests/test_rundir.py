"""RunDirectory: the notata 0.3 layout, the run's logs, safety, and the readers."""

from __future__ import annotations

import importlib.util
import json
import logging
import os
import pickle
import re
import socket
from collections.abc import Iterator
from pathlib import Path

import notata
import numpy as np
import pytest
import yaml

from aind_log_utils import RunDirectory, canonical, setup_logging
from aind_log_utils._rundir import RunReader, effective_status, list_runs
from aind_log_utils.testing import read_jsonl

TEXT_LINE = re.compile(
    r"^\[\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\] (DEBUG|INFO|WARNING|ERROR|CRITICAL) .*$"
)


@pytest.fixture(autouse=True)
def _restore_root_logger() -> Iterator[None]:
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    yield
    for handler in list(root.handlers):
        if handler not in handlers:
            root.removeHandler(handler)
    root.setLevel(level)


def text_lines(run_path: Path) -> list[str]:
    return (run_path / "log.txt").read_text(encoding="utf-8").splitlines()


# -- layout -------------------------------------------------------------------------------
def test_layout_matches_notata(tmp_path: Path) -> None:
    with RunDirectory("oscillator_dt1e-3", base_dir=tmp_path, params={"omega": 2.0}) as run:
        logging.getLogger("some.module").info("integrating")
        run.log_metrics({"loss": 0.5}, step=1)
        run.json("final_state", {"x": 1.0})
    path = tmp_path / "log_oscillator_dt1e-3"
    assert run.path == path
    for name in ("log.txt", "log.jsonl", "metadata.json", "params.yaml", "metrics.jsonl"):
        assert (path / name).is_file(), name
    for name in ("data", "plots", "artifacts"):
        assert (path / name).is_dir(), name
    meta = json.loads((path / "metadata.json").read_text())
    assert meta["run_id"] == "oscillator_dt1e-3" and meta["status"] == "complete"
    assert re.fullmatch(r"\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}", meta["start_time"])
    assert re.fullmatch(r"\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}", meta["end_time"])
    assert isinstance(meta["runtime_sec"], float)
    assert meta["pid"] == os.getpid() and meta["hostname"] == socket.gethostname()
    assert meta["writer"].startswith("aind-log-utils ")
    # notata writes indent 2, sorted keys
    assert (path / "metadata.json").read_text() == json.dumps(meta, indent=2, sort_keys=True) + "\n"
    lines = text_lines(path)
    assert all(TEXT_LINE.match(line) for line in lines), lines
    assert any(line.endswith("INFO integrating") for line in lines)
    assert lines[-1].endswith("INFO Marked complete")
    records = read_jsonl(path / "log.jsonl")
    assert [r["message"] for r in records if r["logger"] == "some.module"] == ["integrating"]


def test_notata_reader_reads_our_run(tmp_path: Path) -> None:
    with RunDirectory("ours", base_dir=tmp_path, params={"omega": 2.0, "steps": 10}) as run:
        run.array("energy", np.arange(5.0))
        run.arrays("trajectory", x=np.zeros(3), v=np.ones(3))
        run.json("metrics", {"drift": 1e-9})
        run.text("notes", "converged")
        run.pickle("model", {"w": [1, 2]})
        run.bytes("weights.raw", b"\x01\x02")
        run["artifacts/settings/config.json"].write_text('{"a": 1}')
    reader = notata.LogReader(tmp_path / "log_ours")
    assert reader.meta["status"] == "complete"
    assert reader.params == {"omega": 2.0, "steps": 10}
    assert reader.artifacts == [
        "metrics.json",
        "model.pkl",
        "notes.txt",
        "settings/config.json",
        "weights.raw",
    ]
    assert reader.load_json("metrics") == {"drift": 1e-9}
    assert reader.load_array("energy").tolist() == [0.0, 1.0, 2.0, 3.0, 4.0]
    assert reader.load_array("trajectory:v").tolist() == [1.0, 1.0, 1.0]
    assert sorted(reader.arrays) == ["energy", "trajectory:v", "trajectory:x"]


def test_our_reader_reads_a_notata_run(tmp_path: Path) -> None:
    with notata.Logbook("theirs", base_dir=tmp_path, params={"dt": 0.001}) as book:
        book.info("step=1")
        book.json("final", {"E": 0.5})
        book.array("energy", np.array([1.0, 2.0]))
    unfinished = notata.Logbook("unfinished", base_dir=tmp_path)
    reader = RunDirectory.open(tmp_path / "log_theirs")
    assert isinstance(reader, RunReader)
    assert reader.run_id == "theirs" and reader.status == "complete"
    assert reader.params == {"dt": 0.001}
    assert reader.artifacts == ["final.json"] and reader.load_json("final.json") == {"E": 0.5}
    assert reader.load_array("energy").tolist() == [1.0, 2.0]
    assert reader.metrics() == [] and reader.artifact_pointers == []
    # notata records no pid: an unfinished notata run is reported as written, never "crashed"
    assert RunDirectory.open(unfinished.path).status == "initialized"
    unfinished.mark_complete()  # type: ignore[no-untyped-call]
    for handler in list(unfinished.logger.handlers):
        handler.close()
        unfinished.logger.removeHandler(handler)


def test_params_yaml_is_safe_yaml(tmp_path: Path) -> None:
    params = {
        "omega": np.float64(2.0),
        "steps": np.int64(10),
        "flag": np.bool_(True),
        "out": tmp_path / "x",
        "shape": (2, 3),
        "grid": np.arange(3),
    }
    with RunDirectory("p", base_dir=tmp_path, params=params) as run:
        run.params(extra="added")
    loaded = yaml.safe_load((tmp_path / "log_p" / "params.yaml").read_text())
    assert loaded == {
        "omega": 2.0,
        "steps": 10,
        "flag": True,
        "out": str(tmp_path / "x"),
        "shape": [2, 3],
        "grid": [0, 1, 2],
        "extra": "added",
    }
    assert notata.LogReader(tmp_path / "log_p").params == loaded


def test_failure_marks_failed_and_reraises(tmp_path: Path) -> None:
    with pytest.raises(RuntimeError, match="Diverged"), RunDirectory("unstable", base_dir=tmp_path):
        logging.getLogger("sim").error("x is not finite")
        raise RuntimeError("Diverged (token=abcd1234efgh)")
    path = tmp_path / "log_unstable"
    meta = json.loads((path / "metadata.json").read_text())
    assert meta["status"] == "failed"
    assert (
        meta["failure_reason"].startswith("Diverged")
        and "abcd1234efgh" not in meta["failure_reason"]
    )
    last = read_jsonl(path / "log.jsonl")[-1]
    assert (
        last["level"] == "ERROR"
        and last["status"] == "fail"
        and last["event_type"] == "stage_failure"
    )
    assert last["error_type"] == "RuntimeError" and last["first_error"] == "x is not finite"
    assert last["records"] == {"INFO": 1, "ERROR": 1}
    assert any(
        line.startswith("[") and " ERROR Marked failed: Diverged" in line
        for line in text_lines(path)
    )
    assert notata.LogReader(path).meta["status"] == "failed"


def test_manual_lifecycle(tmp_path: Path) -> None:
    run = RunDirectory("manual", base_dir=tmp_path)
    assert run.status == "initialized" and not run.closed
    run.mark_failed("Diverged")
    assert run.status == "failed" and run.closed
    run.mark_complete()  # ended runs keep their status
    assert run.status == "failed"
    with pytest.raises(RuntimeError, match="closed"):
        run.json("late", {})
    with pytest.raises(RuntimeError, match="closed"):
        run.log_metrics({"loss": 1.0}, step=1)
    assert run._handler not in logging.getLogger().handlers


# -- the run's logs ---------------------------------------------------------------------------
def test_root_level_lowered_to_info_and_restored(tmp_path: Path) -> None:
    root = logging.getLogger()
    root.setLevel(logging.WARNING)
    seen: list[str] = []

    class Collect(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            seen.append(record.getMessage())

    existing = Collect()
    root.addHandler(existing)
    try:
        with RunDirectory("levels", base_dir=tmp_path):
            assert root.level == logging.INFO
            logging.getLogger("lib").info("info reaches the run")
            logging.getLogger("lib").debug("debug does not")
            logging.getLogger("lib").warning("warning reaches both")
        assert root.level == logging.WARNING and existing.level == logging.NOTSET
    finally:
        root.removeHandler(existing)
    messages = [r["message"] for r in read_jsonl(tmp_path / "log_levels" / "log.jsonl")]
    assert "info reaches the run" in messages and "warning reaches both" in messages
    assert "debug does not" not in messages
    # the handler that was there before still sees only what it saw before
    assert seen == ["warning reaches both"]


def test_with_session_records_carry_standard_fields_and_stop_line_gets_metrics(
    tmp_path: Path,
) -> None:
    log_file = tmp_path / "session.jsonl"
    session = setup_logging("rig-prog", subject_id="123456", console=False, log_file=log_file)
    with RunDirectory("withsession", base_dir=tmp_path / "results") as run:
        logging.getLogger("prog").info("acquiring")
        run.log_metrics({"loss": 0.5}, step=1)
        run.log_metrics({"loss": 0.25, "acc": 0.9}, step=2)
        run.log_metrics({"loss": 0.3}, step=2, split="val")
        with canonical("Session recorded") as c:
            c.add(wt_g=23.9)
    session.close()
    run_records = read_jsonl(run.path / "log.jsonl")
    acquiring = next(r for r in run_records if r["message"] == "acquiring")
    assert acquiring["subject_id"] == "123456" and acquiring["process_name"] == "rig-prog"
    assert [r["wt_g"] for r in run_records if r["message"] == "Session recorded"] == [23.9]
    meta = json.loads((run.path / "metadata.json").read_text())
    assert meta["subject_id"] == "123456" and meta["process_name"] == "rig-prog"
    session_records = read_jsonl(log_file)
    stops = [r for r in session_records if r["message"] == "Stopping"]
    assert len(stops) == 1
    assert stops[0]["last_metrics"] == {"loss": 0.25, "acc": 0.9, "val/loss": 0.3}
    # the run's own canonical line went through the session too, once
    ends = [r for r in session_records if r["message"] == "Marked complete"]
    assert len(ends) == 1 and ends[0]["last_step"] == 2 and ends[0]["status"] == "success"
    assert len([r for r in run_records if r["message"] == "acquiring"]) == 1


def test_secrets_are_masked_in_both_log_files(tmp_path: Path) -> None:
    with RunDirectory("secret", base_dir=tmp_path):
        logging.getLogger("db").info("connecting to postgres://user:s3cr3tpw@db/x")
    path = tmp_path / "log_secret"
    assert "s3cr3tpw" not in (path / "log.txt").read_text()
    assert "s3cr3tpw" not in (path / "log.jsonl").read_text()
    assert "postgres://user:" in (path / "log.txt").read_text()


def test_params_and_metadata_keep_no_secret_and_every_other_value(tmp_path: Path) -> None:
    """params.yaml, params.json, metadata.json and hyperparams.json go wherever the
    results go: their secrets are masked as in log lines, and nothing else changes (a
    long value is not cut, a None or a flag under a secret-looking key is kept). A
    run's data is not touched."""
    from pydantic import SecretStr

    from aind_log_utils import register_secret

    register_secret("Reg1stered-Value")
    long_text = "x" * 20_000
    params = {
        "db_password": "hunter22",
        "api": {"token": 12345678, "url": "https://u:pw-in-url@host/x"},
        "note": "run with Reg1stered-Value",
        "key": SecretStr("typed-secret"),
        "tokenizer": "bert-base-uncased",
        "max_tokens": 1024,
        "use_auth": True,
        "password": None,
        "config": long_text,
    }
    with RunDirectory("sec", base_dir=tmp_path, params=params) as run:
        run.params(ext="json", **params)
        run.meta(operator_token="meta-token-1", rig="r1")
        run.log_hyperparams({"hf_token": "hunter22", "lr": 0.1})
        # A run's data is the user's: written as given.
        run.save_json("tokens", {"api_token": "data-token-1", "max_tokens": 5})
    path = tmp_path / "log_sec"
    saved = json.loads((path / "artifacts" / "tokens.json").read_text())
    assert saved == {"api_token": "data-token-1", "max_tokens": 5}
    assert json.loads((path / "hyperparams.json").read_text()) == {
        "hf_token": "**********",
        "lr": 0.1,
    }
    for name in ("params.yaml", "params.json", "metadata.json", "hyperparams.json"):
        text = (path / name).read_text()
        leaks = ("hunter22", "12345678", "pw-in-url", "Reg1stered", "typed-secret", "meta-token")
        assert not [secret for secret in leaks if secret in text], name
    for loaded in (yaml.safe_load((path / "params.yaml").read_text()),
                   json.loads((path / "params.json").read_text())):  # fmt: skip
        assert loaded["db_password"] == loaded["api"]["token"] == loaded["key"] == "**********"
        assert loaded["api"]["url"] == "https://u:**********@host/x"
        assert loaded["note"] == "run with **********"
        assert (loaded["tokenizer"], loaded["max_tokens"]) == ("bert-base-uncased", 1024)
        assert (loaded["use_auth"], loaded["password"], loaded["config"]) == (True, None, long_text)
    assert json.loads((path / "metadata.json").read_text())["operator_token"] == "**********"


def test_exception_traceback_goes_to_log_txt(tmp_path: Path) -> None:
    with RunDirectory("tb", base_dir=tmp_path):
        try:
            raise KeyError("missing")
        except KeyError:
            logging.getLogger("x").exception("lookup failed")
    text = (tmp_path / "log_tb" / "log.txt").read_text()
    assert "ERROR lookup failed\nTraceback (most recent call last):" in text
    assert "KeyError: 'missing'" in text


def test_subscribe_logger_captures_non_propagating_logger_once(tmp_path: Path) -> None:
    quiet = logging.getLogger("thirdparty.dynamo")
    quiet.propagate = False
    quiet.setLevel(logging.WARNING)
    loud = logging.getLogger("thirdparty.sklearn")
    try:
        with RunDirectory("subs", base_dir=tmp_path) as run:
            quiet.info("not yet subscribed")
            run.subscribe_logger("thirdparty.dynamo")
            run.subscribe_logger("thirdparty.sklearn", level="INFO")
            quiet.debug("dynamo debug")
            loud.info("sklearn info")
            run.unsubscribe_logger("thirdparty.dynamo")
            assert quiet.level == logging.WARNING
            quiet.warning("after unsubscribe")
        assert loud.handlers == [] and quiet.handlers == []
    finally:
        quiet.propagate = True
        quiet.setLevel(logging.NOTSET)
    messages = [r["message"] for r in read_jsonl(tmp_path / "log_subs" / "log.jsonl")]
    assert "dynamo debug" in messages
    assert messages.count("sklearn info") == 1
    assert "not yet subscribed" not in messages and "after unsubscribe" not in messages


def test_records_from_other_threads_land_in_the_run(tmp_path: Path) -> None:
    import threading

    def work(i: int) -> None:
        for j in range(50):
            logging.getLogger("worker").info("item %d-%d", i, j)

    with RunDirectory("threads", base_dir=tmp_path):
        threads = [threading.Thread(target=work, args=(i,)) for i in range(4)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
    messages = [r["message"] for r in read_jsonl(tmp_path / "log_threads" / "log.jsonl")]
    assert len([m for m in messages if m.startswith("item ")]) == 200
    assert all(TEXT_LINE.match(line) for line in text_lines(tmp_path / "log_threads"))


# -- names, atomic writes, creation ----------------------------------------------------------------
@pytest.mark.parametrize("bad", ["", "a/b", "a\\b", ".", "..", " padded", "C:x"])
def test_run_id_must_be_one_safe_component(tmp_path: Path, bad: str) -> None:
    with pytest.raises(ValueError, match="run_id"):
        RunDirectory(bad, base_dir=tmp_path)
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("bad", ["../../escape", "/tmp/abs", "sub/../../x", "C:\\x"])
def test_names_leaving_the_run_are_refused_before_writing(tmp_path: Path, bad: str) -> None:
    with RunDirectory("safe", base_dir=tmp_path / "base") as run:
        with pytest.raises(ValueError, match="name"):
            run.json(bad, {"x": 1})
        with pytest.raises(ValueError, match="path"):
            run[bad]
        with pytest.raises(ValueError):
            run.text(bad, "x")
    written = {p.name for p in tmp_path.rglob("*") if p.is_file()}
    assert "escape.json" not in written and "x.json" not in written
    assert not (tmp_path / "escape.json").exists()


def test_symlink_out_of_the_run_is_refused(tmp_path: Path) -> None:
    outside = tmp_path / "outside"
    outside.mkdir()
    with RunDirectory("links", base_dir=tmp_path / "base") as run:
        (run.path / "artifacts" / "out").symlink_to(outside, target_is_directory=True)
        with pytest.raises(ValueError, match="outside the run"):
            run.json("out/x", {"x": 1})
        with pytest.raises(ValueError, match="outside the run"):
            run["artifacts/out/y.txt"]
        inner = run.path / "artifacts" / "inner"
        inner.mkdir()
        (run.path / "artifacts" / "alias").symlink_to(inner, target_is_directory=True)
        run.json("alias/ok", {"x": 1})  # a link that stays inside is fine
    assert list(outside.iterdir()) == []
    assert json.loads((run.path / "artifacts" / "inner" / "ok.json").read_text()) == {"x": 1}


def test_failed_writes_leave_old_file_and_no_temp(tmp_path: Path) -> None:
    with RunDirectory("atomic", base_dir=tmp_path) as run:
        target = run.json("state", {"x": 1})
        with pytest.raises(TypeError, match="not JSON serializable"):
            run.json("state", {"x": object()})
        with pytest.raises(TypeError):
            run.json("fresh", {"bad": object()})
        old_pickle = run.pickle("obj", [1, 2])
        # the pickler has streamed megabytes to the temp file when it fails
        with pytest.raises(ZeroDivisionError):
            run.pickle("obj", [b"x" * 4_000_000, _Unpicklable()])
    assert json.loads(target.read_text()) == {"x": 1}
    assert old_pickle.read_bytes() == pickle.dumps([1, 2], protocol=pickle.HIGHEST_PROTOCOL)
    assert sorted(p.name for p in (run.path / "artifacts").iterdir()) == ["obj.pkl", "state.json"]


class _Unpicklable:
    def __reduce__(self) -> tuple[object, ...]:
        raise ZeroDivisionError("cannot pickle")


def test_existing_run_overwrite_and_resume(tmp_path: Path) -> None:
    with RunDirectory("again", base_dir=tmp_path) as run:
        run.log_metrics({"loss": 1.0}, step=1)
        run.json("old", {})
    with pytest.raises(FileExistsError):
        RunDirectory("again", base_dir=tmp_path)
    with pytest.raises(ValueError, match="overwrite and resume"):
        RunDirectory("again", base_dir=tmp_path, overwrite=True, resume=True)
    with RunDirectory("again", base_dir=tmp_path, resume=True) as run:
        assert run.status == "initialized"
        run.log_metrics({"loss": 0.5}, step=2)
    reader = RunDirectory.open(run.path)
    assert [row["step"] for row in reader.metrics()] == [1, 2]
    assert reader.status == "complete" and reader.meta["resume_count"] == 1
    assert reader.artifacts == ["old.json"]
    assert sum("Run resumed" in line for line in text_lines(run.path)) == 1
    with RunDirectory("again", base_dir=tmp_path, overwrite=True):
        pass
    assert (
        RunDirectory.open(run.path).artifacts == [] and RunDirectory.open(run.path).metrics() == []
    )


def test_resume_creates_a_missing_run(tmp_path: Path) -> None:
    with RunDirectory("new", base_dir=tmp_path, resume=True, params={"a": 1}):
        pass
    assert RunDirectory.open(tmp_path / "log_new").params == {"a": 1}


# -- metrics and artifacts --------------------------------------------------------------------------
def test_log_metrics_rows_and_capture_metric(tmp_path: Path) -> None:
    with RunDirectory("metrics", base_dir=tmp_path) as run:
        run.log_metrics({"loss": np.float32(0.5), "acc": 1}, step=np.int64(1))
        run.log_metrics({"loss": 0.4}, 2, split="val")
        run.log_scalar("lr", 1e-3, 3)
        run.metric("note", "ok")
        run.log_metrics({"nan": float("nan")}, step=4)
        # JSON lines hold 64-bit integers: past that a float (past a float, its text)
        run.log_metrics({"edge": 2**64 - 1, "bytes": 2**70, "huge": 10**400}, step=5)
        with pytest.raises(TypeError, match="step"):
            run.log_metrics({"x": 1.0}, step=1.5)  # type: ignore[arg-type]
        with pytest.raises(ValueError, match="step"):
            run.log_metrics({"x": 1.0}, step=2**64)
        with pytest.raises(ValueError, match="metrics"):
            run.log_metrics({}, step=1)
        assert run.last_metrics == {
            "loss": 0.5,
            "acc": 1,
            "val/loss": 0.4,
            "lr": 1e-3,
            "note": "ok",
            "nan": "nan",
            "edge": 2**64 - 1,
            "bytes": float(2**70),
            "huge": str(10**400),
        }
    rows = [json.loads(line) for line in (run.path / "metrics.jsonl").read_text().splitlines()]
    assert [set(row) for row in rows] == [{"ts", "step", "split", "metrics"}] * 6
    assert [(row["step"], row["split"], row["metrics"]) for row in rows] == [
        (1, "train", {"loss": 0.5, "acc": 1}),
        (2, "val", {"loss": 0.4}),
        (3, "train", {"lr": 1e-3}),
        (None, "train", {"note": "ok"}),
        (4, "train", {"nan": "nan"}),
        (5, "train", {"edge": 2**64 - 1, "bytes": float(2**70), "huge": str(10**400)}),
    ]
    assert RunDirectory.open(run.path).metrics(split="val")[0]["metrics"] == {"loss": 0.4}


def test_hyperparams_merge_and_artifact_pointers(tmp_path: Path) -> None:
    checkpoint = tmp_path / "elsewhere" / "ckpt.pt"
    checkpoint.parent.mkdir()
    checkpoint.write_bytes(b"weights")
    report = tmp_path / "report.html"
    report.write_text("<html></html>")
    with RunDirectory("store", base_dir=tmp_path / "runs") as run:
        run.log_hyperparams({"lr": 1e-3, "layers": (2, 3)})
        merged = run.log_hyperparams({"batch": np.int64(32)})
        assert merged == {"lr": 1e-3, "layers": [2, 3], "batch": 32}
        run.log_artifact("best", checkpoint, kind="checkpoint")
        run.file("report", report, kind="report")
        run.data("matrix", np.eye(2))
        run.data("scores", {"TP53": 0.8})
    reader = RunDirectory.open(run.path)
    assert reader.hyperparams == {"lr": 1e-3, "layers": [2, 3], "batch": 32}
    pointers = {p["name"]: p for p in reader.artifact_pointers}
    assert pointers["best"]["path"] == str(checkpoint) and pointers["best"]["kind"] == "checkpoint"
    assert (run.path / "artifacts" / "report.html").read_text() == "<html></html>"
    assert pointers["report"]["path"] == "artifacts/report.html"
    assert pointers["matrix"]["kind"] == "data" and pointers["matrix"]["metadata"]["shape"] == [
        2,
        2,
    ]
    assert json.loads((run.path / "data" / "matrix.json").read_text()) == [[1.0, 0.0], [0.0, 1.0]]
    assert all({"name", "path", "kind", "ts"} <= set(p) for p in pointers.values())
    # the pointer file stays beside metadata.json, and only pointers are stored
    assert (run.path / "artifacts.json").is_file() and (run.path / "hyperparams.json").is_file()
    assert not (run.path / "artifacts" / "ckpt.pt").exists()


def test_seed_text_save_names(tmp_path: Path) -> None:
    with RunDirectory("heat_manual", base_dir=tmp_path, params={"Nx": 64}) as run:
        run.save_numpy("T_step100", np.ones((2, 2)), category="data/intermediate")
        run.save_arrays("trajectory", x=np.zeros(2), v=np.ones(2))
        run.save_json("final_stats", {"max": 1.0})
        run.save_text("notes", "ok")
        run.save_pickle("obj", [1, 2])
        run.save_bytes("blob.bin", b"\x00")
        with pytest.raises(ValueError, match="category"):
            run.save_numpy("x", np.ones(1), category="../out")
    reader = notata.LogReader(run.path)
    assert (run.path / "data" / "intermediate" / "T_step100.npy").is_file()
    assert reader.load_array("trajectory:x").tolist() == [0.0, 0.0]
    assert reader.load_json("final_stats") == {"max": 1.0}
    assert reader.artifacts == ["blob.bin", "final_stats.json", "notes.txt", "obj.pkl"]


@pytest.mark.skipif(
    importlib.util.find_spec("matplotlib") is not None, reason="matplotlib is installed"
)
def test_plots_without_matplotlib_name_the_extra(tmp_path: Path) -> None:
    with RunDirectory("noplot", base_dir=tmp_path) as run:
        with pytest.raises(ImportError, match=r"aind-log-utils\[numpy\]"):
            run.plot("energy", object())
        with pytest.raises(ImportError, match=r"aind-log-utils\[numpy\]"):
            run.figure("energy", object())
    assert list((run.path / "plots").iterdir()) == []


def test_plot_and_figure(tmp_path: Path) -> None:
    pytest.importorskip("matplotlib")
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    with RunDirectory("plots", base_dir=tmp_path) as run:
        fig, ax = plt.subplots()
        ax.plot([1, 2, 3], [1, 4, 9])
        run.plot("curve", fig, formats=("png", "svg"))
        run.figure("curve_fig", fig)
    assert notata.LogReader(run.path).plots == ["curve.png", "curve.svg", "curve_fig.png"]
    assert RunDirectory.open(run.path).artifact_pointers[0]["kind"] == "image"


# -- readers ------------------------------------------------------------------------------------------
def test_list_runs_reads_ours_and_notatas(tmp_path: Path) -> None:
    with RunDirectory("a_ours", base_dir=tmp_path):
        pass
    with notata.Logbook("b_theirs", base_dir=tmp_path):
        pass
    (tmp_path / "not_a_run").mkdir()
    nested = tmp_path / "experiment" / "runs"
    with RunDirectory("c_nested", base_dir=nested):
        pass
    runs = list_runs(tmp_path)
    assert sorted(r.run_id for r in runs) == ["a_ours", "b_theirs"]
    assert {r.summary()["status"] for r in runs} == {"complete"}
    assert sorted(r.run_id for r in list_runs(tmp_path, recursive=True)) == [
        "a_ours",
        "b_theirs",
        "c_nested",
    ]
    assert list_runs(tmp_path / "missing") == []


def test_effective_status_rules() -> None:
    host = socket.gethostname()
    assert effective_status({"status": "complete", "pid": 1}) == "complete"
    assert effective_status({}) == "unknown"
    assert effective_status({"status": "initialized"}) == "initialized"
    assert (
        effective_status({"status": "initialized", "pid": os.getpid(), "hostname": "other-host"})
        == "initialized"
    )
    assert (
        effective_status({"status": "initialized", "pid": os.getpid(), "hostname": host})
        == "running"
    )
    # the pid is alive but belongs to a process started at another time: reused
    assert (
        effective_status(
            {"status": "initialized", "pid": os.getpid(), "hostname": host, "pid_create_time": 1.0}
        )
        == "crashed"
    )


def test_reader_refuses_non_runs_and_bad_names(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError):
        RunReader(tmp_path / "missing")
    with pytest.raises(ValueError, match="not a run directory"):
        RunReader(tmp_path)
    with RunDirectory("r", base_dir=tmp_path):
        pass
    reader = RunDirectory.open(tmp_path / "log_r")
    with pytest.raises(ValueError):
        reader.load_json("../metadata")
    with pytest.raises(FileNotFoundError):
        reader.load_array("missing")
    assert "Run initialized" in [r["message"] for r in reader.log_records()]


def test_session_set_up_inside_a_run_keeps_its_level(tmp_path: Path) -> None:
    root = logging.getLogger()
    root.setLevel(logging.WARNING)
    with RunDirectory("late_session", base_dir=tmp_path):
        session = setup_logging("late", console=False, log_file=tmp_path / "s.jsonl")
        assert root.level == logging.INFO
    assert root.level == logging.INFO  # the session chose INFO: not reverted by the run
    session.close()


def test_bad_records_are_written_and_never_raise(tmp_path: Path) -> None:
    with RunDirectory("bad_records", base_dir=tmp_path):
        logging.getLogger("x").info("%d items", "not a number")
        logging.getLogger("x").info("surrogate \udcff and newline\nsecond line")
    records = read_jsonl(tmp_path / "log_bad_records" / "log.jsonl")
    messages = [r["message"] for r in records if r["logger"] == "x"]
    assert messages[0].startswith("%d items <formatting failed")
    assert len(messages) == 2


def test_the_exception_ending_a_run_is_never_hidden(tmp_path: Path) -> None:
    import shutil

    with (
        pytest.raises(KeyError, match="original"),
        RunDirectory("vanishing", base_dir=tmp_path) as run,
    ):
        shutil.rmtree(run.path)  # the end cannot be recorded any more
        raise KeyError("original")
    assert run.closed and run._handler not in logging.getLogger().handlers
