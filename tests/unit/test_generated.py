"""The generated projects of the scale benchmarks are projects the tasks take as they are."""

from __future__ import annotations

import shutil
from pathlib import Path

from leaddb import generated, verdict

ROOT = Path(__file__).resolve().parents[2]


def test_a_generated_project_prints_every_file_in_its_spec_and_loads(tmp_path):
    files = generated.generated_project(tmp_path, 12)
    shutil.copyfile(ROOT / "docker-compose.yml", tmp_path / "docker-compose.yml")  # the mount
    loaded = verdict.load(tmp_path)  # every rule, "printed in the spec" (both ways) included
    assert [m.name for m in loaded] == [m.name for m in files]
    assert all(m.single_transaction and m.text.count("CREATE TABLE") == 1 for m in loaded)
