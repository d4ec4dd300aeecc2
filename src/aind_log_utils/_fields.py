"""The AIND standard fields: the model, its validation, and discovery.

Imported by :func:`setup_logging` (it loads pydantic), never by ``import
aind_log_utils`` itself.
"""

from __future__ import annotations

import datetime as _dt
import hashlib
import os
import re
import socket
import sys
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, ValidationError, field_validator, model_validator

__all__ = [
    "FIELD_NAMES",
    "StandardFields",
    "derive_from_asset_name",
    "discover_fields",
    "new_log_session",
    "parse_acquisition_name",
    "validate_fields",
]

_ACQ_RE = re.compile(r"^(?P<subject>.+)_(?P<date>\d{4}-\d{2}-\d{2})_(?P<time>\d{2}-\d{2}-\d{2})$")
# <modality>_<subject_id>_<YYYY-MM-DD>_<HH-MM-SS>, possibly followed by a derived
# suffix (e.g. "_sorted_2026-01-02_00-00-00").
_ASSET_RE = re.compile(
    r"^(?P<modality>[^_]+(?:_[^_\d][^_]*)*?)_(?P<subject>[^_]+)_"
    r"(?P<date>\d{4}-\d{2}-\d{2})_(?P<time>\d{2}-\d{2}-\d{2})(?:_.*)?$"
)
#: Values 0.2.x callers pass for "not known"; treated as absent.
_UNKNOWN = frozenset({"", "undefined", "None", "none", "null"})


class StandardFields(BaseModel):
    """The standard fields a session adds to every record.

    Every field is optional: a field that is not known is left out of the
    lines, never written as ``"undefined"``. Numbers given for identifiers
    (``subject_id=123456``) are kept as strings.
    """

    model_config = ConfigDict(extra="forbid", coerce_numbers_to_str=True, frozen=True)

    hostname: str | None = None
    """Hostname of the machine running the software (discovered)."""
    software_name: str | None = None
    """The software generating the logs, e.g. ``waterlog``."""
    software_version: str | None = None
    """Version of that software, e.g. ``1.0.4.dev0``."""
    rig_id: str | None = None
    """SIPE's rig name, e.g. ``frg_1_a`` (discovered from ``aibs_comp_id``)."""
    instrument_id: str | None = None
    """Scientific Computing's instrument id, e.g. ``MESO1``."""
    acquisition_name: str | None = None
    """``<subject_id>_<YYYY-MM-DD>_<HH-MM-SS>``, e.g. ``123456_2026-01-01_23-00-00``."""
    subject_id: str | None = None
    """The subject of the acquisition, e.g. ``123456``."""
    specimen_id: str | None = None
    """A tissue identifier that contains the subject_id, e.g. ``123456_001``."""
    pipeline_name: str | None = None
    """The processing pipeline (Code Ocean pipeline, Airflow DAG)."""
    process_name: str | None = None
    """The processing container (Code Ocean capsule)."""
    user_id: str | None = None
    """Who runs the software (for experiment software)."""
    asset_name: str | None = None
    """The AIND asset name (kept from 0.2.x)."""
    log_session: str | None = None
    """7 hex characters identifying this logging session (kept from 0.2.x)."""
    capsule_id: str | None = None
    """Code Ocean ``CO_CAPSULE_ID``."""
    computation_id: str | None = None
    """Code Ocean ``CO_COMPUTATION_ID``."""

    @field_validator("*", mode="before")
    @classmethod
    def _unknown_is_none(cls, value: Any) -> Any:
        if isinstance(value, str):
            value = value.strip()
            if value in _UNKNOWN:
                return None
        return value

    @field_validator("acquisition_name")
    @classmethod
    def _check_acquisition_name(cls, value: str | None) -> str | None:
        if value is not None:
            parse_acquisition_name(value)
        return value

    @model_validator(mode="after")
    def _check_consistency(self) -> StandardFields:
        if self.acquisition_name and self.subject_id:
            subject = parse_acquisition_name(self.acquisition_name)[0]
            if subject != self.subject_id:
                raise ValueError(
                    f"subject_id {self.subject_id!r} disagrees with acquisition_name "
                    f"{self.acquisition_name!r} (whose subject is {subject!r})"
                )
        if self.specimen_id and self.subject_id and self.subject_id not in self.specimen_id:
            raise ValueError(
                f"specimen_id {self.specimen_id!r} does not contain subject_id {self.subject_id!r}"
            )
        return self

    def as_fields(self) -> dict[str, str]:
        """The known fields, in the standard's order, without the unknown ones."""
        return {k: v for k, v in self.model_dump().items() if v is not None}


#: The names a session accepts as standard fields.
FIELD_NAMES: tuple[str, ...] = tuple(StandardFields.model_fields)


def parse_acquisition_name(value: str) -> tuple[str, _dt.datetime]:
    """Split an acquisition name into its subject id and its date and time.

    Args:
        value: ``<subject_id>_<YYYY-MM-DD>_<HH-MM-SS>``.

    Returns:
        The subject id and the (naive) acquisition datetime.

    Raises:
        ValueError: the name is not of that form or not a real date and time.
    """
    match = _ACQ_RE.match(value)
    if match is None:
        raise ValueError(
            f"acquisition_name {value!r} is not of the form <subject_id>_<YYYY-MM-DD>_<HH-MM-SS>"
        )
    try:
        when = _dt.datetime.strptime(f"{match['date']}_{match['time']}", "%Y-%m-%d_%H-%M-%S")
    except ValueError:
        raise ValueError(f"acquisition_name {value!r} does not hold a real date and time") from None
    return match["subject"], when


def derive_from_asset_name(asset_name: str) -> dict[str, str]:
    """Derive ``subject_id`` and ``acquisition_name`` from an AIND asset name.

    Args:
        asset_name: e.g. ``ecephys_123456_2026-01-01_23-00-00``.

    Returns:
        ``{"subject_id": ..., "acquisition_name": ...}``, or ``{}`` when the name
        is not of the AIND form (it is then kept as it is, nothing derived).
    """
    match = _ASSET_RE.match(asset_name.strip())
    if match is None:
        return {}
    acquisition = f"{match['subject']}_{match['date']}_{match['time']}"
    try:
        parse_acquisition_name(acquisition)
    except ValueError:
        return {}
    return {"subject_id": match["subject"], "acquisition_name": acquisition}


def validate_fields(fields: Mapping[str, Any]) -> dict[str, str]:
    """Validate standard fields, raising a ValueError that names the bad one.

    Args:
        fields: field name to value; None means unknown.

    Returns:
        The known fields as strings.

    Raises:
        ValueError: a field has a bad value, or fields disagree; the message
            starts with the field's name.
        TypeError: a field is not a string or number.
    """
    try:
        return StandardFields(**fields).as_fields()
    except ValidationError as exc:
        error = exc.errors()[0]
        loc = ".".join(str(p) for p in error["loc"]) or "fields"
        message = str(error["msg"]).removeprefix("Value error, ")
        if error["type"] in ("string_type",):
            raise TypeError(
                f"{loc}: expected a string, got {type(error['input']).__name__}"
            ) from None
        if error["type"] == "extra_forbidden":
            raise ValueError(f"{loc}: not a standard field") from None
        if message.startswith(loc):
            raise ValueError(message) from None
        raise ValueError(f"{loc}: {message}") from None


def new_log_session() -> str:
    """A fresh 7-hex-character session id, as 0.2.x made (md5 of time, host, pid)."""
    seed = f"{time.time_ns()}{socket.gethostname()}{os.getpid()}".encode()
    return hashlib.md5(seed, usedforsecurity=False).hexdigest()[:7]


def _env(*names: str) -> str | None:
    for name in names:
        value = os.environ.get(name)
        if value and value.strip() not in _UNKNOWN:
            return value.strip()
    return None


def discover_fields(caller_module: str | None = None) -> dict[str, str]:
    """Discover the fields the environment tells, once.

    Args:
        caller_module: the ``__name__`` of the module that called setup, used to
            find the calling distribution's name and version.

    Returns:
        ``hostname``, ``rig_id`` (from ``aibs_comp_id``), ``capsule_id`` and
        ``computation_id`` (Code Ocean), ``software_name``/``software_version``
        where a distribution can be found; only the known ones.
    """
    found: dict[str, str | None] = {
        "hostname": socket.gethostname() or _env("HOSTNAME", "COMPUTERNAME"),
        "rig_id": _env("aibs_comp_id", "AIBS_COMP_ID"),
        "capsule_id": _env("CO_CAPSULE_ID"),
        "computation_id": _env("CO_COMPUTATION_ID"),
    }
    found.update(_calling_distribution(caller_module))
    return {k: v for k, v in found.items() if v}


def _calling_distribution(caller_module: str | None) -> dict[str, str | None]:
    package = None
    if caller_module and caller_module != "__main__":
        package = caller_module.split(".")[0]
    else:
        spec = getattr(sys.modules.get("__main__"), "__spec__", None)
        if spec is not None and spec.name:
            package = spec.name.split(".")[0]
    if not package or package == "aind_log_utils":
        return {}
    from importlib import metadata

    try:
        dists = metadata.packages_distributions().get(package) or []
    except Exception:
        return {}
    for dist in dists:
        try:
            return {"software_name": dist, "software_version": metadata.version(dist)}
        except metadata.PackageNotFoundError:
            continue
    return {}


def program_name(process_name: str | None, software_name: str | None) -> str:
    """The program's name: process_name, else software_name, else the script's name."""
    if process_name:
        return process_name
    if software_name:
        return software_name
    argv0 = sys.argv[0] if sys.argv and sys.argv[0] else ""
    stem = Path(argv0).stem if argv0 not in ("", "-c", "-m") else ""
    return stem or "python"
