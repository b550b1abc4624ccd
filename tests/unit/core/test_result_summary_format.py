"""The typed result summary (`JobRecord.result`, qforge_runner.summary) keeps metadata.json
as it was: a record written before `topology_changed` and `thermochemistry` existed reads
and is written back byte for byte (the keys stay absent), a record of this release keeps
them (null stays null), and the keys come in the order the dict summary had them."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from qforge.record import JobRecord
from qforge.store.jobstore import JobStore
from qforge_runner.summary import QualitySummary, ResultSummary

JOB_ID = "water_20250301_101500_ab12"

# metadata.json of a COMPLETED job as the releases before topology_changed wrote it
# (summary() of e546996: no top-level topology_changed nor thermochemistry, no
# quality.topology_changed)
OLD = """{
  "schema_version": 1,
  "job_id": "water_20250301_101500_ab12",
  "status": "COMPLETED",
  "created_at": "2025-03-01T10:15:00.000000Z",
  "updated_at": "2025-03-01T10:15:03.000000Z",
  "started_at": "2025-03-01T10:15:01.000000Z",
  "finished_at": "2025-03-01T10:15:03.000000Z",
  "created_ns": 1740824100000000000,
  "spec": {
    "molecule": {
      "symbols": [
        "O",
        "H",
        "H"
      ],
      "geometry": [
        [
          0.0,
          0.0,
          0.1173
        ],
        [
          0.0,
          0.7572,
          -0.4692
        ],
        [
          0.0,
          -0.7572,
          -0.4692
        ]
      ],
      "comment": "water"
    },
    "method": "gfn2",
    "task": "opt",
    "opt_level": "normal",
    "charge": 0,
    "uhf": 0,
    "solvent": null,
    "timeout": null,
    "cpu": null,
    "memory": null,
    "priority": 0,
    "name": "water",
    "labels": {}
  },
  "result": {
    "energy": -5.070544440612,
    "gap": 14.380612348211,
    "converged": true,
    "formula": "H2O",
    "method": "gfn2",
    "task": "opt",
    "wall_time": 0.123,
    "xtb_version": "6.5.1",
    "dipole_debye": 2.1642,
    "quality": {
      "ok": true,
      "converged": true,
      "gap_ok": true,
      "imaginary_frequencies": 0,
      "from_text_output": false,
      "warnings": []
    }
  },
  "error": null,
  "placement": null,
  "attempts": 1,
  "waiting_reason": null,
  "group": "g",
  "input_hash": "0000000000000000000000000000000000000000000000000000000000000000",
  "owner": "alice"
}
"""

# the same job as this release writes it: the newer keys present, null and false
NEW = OLD.replace('''    "dipole_debye": 2.1642,
''', '''    "dipole_debye": 2.1642,
    "topology_changed": null,
    "thermochemistry": null,
''').replace('''      "from_text_output": false,
''', '''      "from_text_output": false,
      "topology_changed": false,
''')


def _stored(tmp_path: Path, text: str) -> JobStore:
    store = JobStore(tmp_path / "jobs")
    store.ensure()
    store.layout.job_dir(JOB_ID).mkdir(parents=True)
    store.layout.metadata(JOB_ID).write_text(text)
    return store


def _written(record: JobRecord) -> str:
    return record.model_dump_json(indent=2) + "\n"


@pytest.mark.parametrize("text", [OLD, NEW], ids=["old", "new"])
def test_a_record_reads_and_is_written_back_byte_for_byte(tmp_path: Path, text: str) -> None:
    assert NEW != OLD
    store = _stored(tmp_path, text)
    record = store.read(JOB_ID)
    assert isinstance(record.result, ResultSummary)
    assert record.result.energy == -5.070544440612 and record.result.quality.ok is True
    assert _written(record) == text
    # through a change of another field and the store's own write
    again = record.evolve(updated_at=record.updated_at)
    assert _written(again) == text
    store.write(again)
    assert store.layout.metadata(JOB_ID).read_text() == text


def test_an_old_record_reads_the_newer_fields_as_their_defaults(tmp_path: Path) -> None:
    result = _stored(tmp_path, OLD).read(JOB_ID).result
    assert result is not None
    assert (result.topology_changed, result.thermochemistry) == (None, None)
    assert result.quality.topology_changed is False
    assert "topology_changed" not in result.model_dump(mode="json")
    assert "topology_changed" not in result.model_dump(mode="json")["quality"]


def test_the_fields_are_in_the_order_of_metadata_json() -> None:
    result = json.loads(NEW)["result"]
    assert list(ResultSummary.model_fields) == list(result)
    assert list(QualitySummary.model_fields) == list(result["quality"])


def test_a_summary_refuses_unknown_keys() -> None:
    data = json.loads(OLD)["result"]
    with pytest.raises(ValueError, match="extra"):
        ResultSummary.model_validate({**data, "energie": -5.0})
