from __future__ import annotations

import pytest

from aind_log_utils._fields import (
    FIELD_NAMES,
    derive_from_asset_name,
    discover_fields,
    new_log_session,
    parse_acquisition_name,
    program_name,
    validate_fields,
)


def test_field_names_cover_the_standard() -> None:
    for name in (
        "hostname",
        "software_name",
        "software_version",
        "rig_id",
        "instrument_id",
        "acquisition_name",
        "subject_id",
        "specimen_id",
        "pipeline_name",
        "process_name",
        "user_id",
        "asset_name",
        "log_session",
        "capsule_id",
        "computation_id",
    ):
        assert name in FIELD_NAMES


@pytest.mark.parametrize(
    ("asset", "expected"),
    [
        ("ecephys_123456_2026-01-01_23-00-00", ("123456", "123456_2026-01-01_23-00-00")),
        ("behavior_videos_654321_2025-12-31_00-00-01", ("654321", "654321_2025-12-31_00-00-01")),
        (
            "SmartSPIM_123456_2026-01-01_23-00-00_stitched_2026-01-02_01-00-00",
            ("123456", "123456_2026-01-01_23-00-00"),
        ),
    ],
)
def test_derive_from_aind_asset_name(asset: str, expected: tuple[str, str]) -> None:
    assert derive_from_asset_name(asset) == {
        "subject_id": expected[0],
        "acquisition_name": expected[1],
    }


@pytest.mark.parametrize(
    "asset", ["my-test-asset", "ecephys_123456_2026-13-01_23-00-00", "x_1_2026-01-01"]
)
def test_non_aind_asset_name_derives_nothing(asset: str) -> None:
    assert derive_from_asset_name(asset) == {}


def test_acquisition_name_must_be_real_date_and_time() -> None:
    assert parse_acquisition_name("123456_2026-01-01_23-00-00")[0] == "123456"
    with pytest.raises(ValueError, match="acquisition_name"):
        parse_acquisition_name("123456_2026-02-30_23-00-00")
    with pytest.raises(ValueError, match="acquisition_name"):
        parse_acquisition_name("123456_2026-01-01_25-00-00")
    with pytest.raises(ValueError, match="acquisition_name"):
        parse_acquisition_name("123456-2026-01-01")


def test_validate_names_the_bad_field() -> None:
    with pytest.raises(ValueError, match="^acquisition_name"):
        validate_fields({"acquisition_name": "nope"})
    with pytest.raises(ValueError, match="subject_id"):
        validate_fields({"acquisition_name": "123456_2026-01-01_23-00-00", "subject_id": "999"})
    with pytest.raises(ValueError, match="specimen_id"):
        validate_fields({"subject_id": "123456", "specimen_id": "777_001"})
    with pytest.raises(ValueError, match="colour"):
        validate_fields({"colour": "red"})
    with pytest.raises(TypeError, match="subject_id"):
        validate_fields({"subject_id": ["a"]})


def test_unknown_values_are_left_out_and_numbers_kept_as_strings() -> None:
    out = validate_fields({"subject_id": 123456, "asset_name": "undefined", "user_id": ""})
    assert out == {"subject_id": "123456"}


def test_discovery(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("aibs_comp_id", "frg_1_a")
    monkeypatch.setenv("CO_CAPSULE_ID", "cap-1")
    monkeypatch.setenv("CO_COMPUTATION_ID", "comp-2")
    found = discover_fields("pytest")
    assert found["rig_id"] == "frg_1_a"
    assert found["capsule_id"] == "cap-1" and found["computation_id"] == "comp-2"
    assert found["hostname"]
    assert found["software_name"] == "pytest" and found["software_version"]


def test_log_session_and_program_name() -> None:
    session = new_log_session()
    assert len(session) == 7 and int(session, 16) >= 0
    assert program_name("cap", "sw") == "cap"
    assert program_name(None, "sw") == "sw"
    assert program_name(None, None)
