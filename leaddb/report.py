"""The verify pipeline's steps as a JSON report and as JUnit XML (one test case per step)."""

from __future__ import annotations

import json
import xml.etree.ElementTree as ET
from dataclasses import asdict, dataclass
from pathlib import Path


@dataclass
class StepResult:
    name: str
    seconds: float
    ok: bool
    exit_code: int = 0
    message: str = ""
    outcome: str = ""
    """Besides ok/failed: the bench's "missed at this machine's floor" (ok, exit 0, and a spec
    timing target missed because this machine's bare boot misses it too); empty otherwise."""


def write(steps: list[StepResult], directory: Path, *, backend: str) -> tuple[Path, Path]:
    directory.mkdir(parents=True, exist_ok=True)
    json_path, junit_path = directory / "verify.json", directory / "verify.junit.xml"
    document = {
        "backend": backend,
        "ok": all(s.ok for s in steps),
        # what a reader must not miss although ok is true: a target missed at this machine's floor
        "warnings": [f"{s.name}: {s.outcome}: {s.message}" for s in steps if s.ok and s.outcome],
        "steps": [asdict(s) for s in steps],
    }
    json_path.write_text(json.dumps(document, indent=2) + "\n", encoding="utf-8", newline="\n")
    suite = ET.Element(
        "testsuite",
        name=f"leaddb.verify[{backend}]",
        tests=str(len(steps)),
        failures=str(sum(not s.ok for s in steps)),
        time=f"{sum(s.seconds for s in steps):.3f}",
    )
    for step in steps:
        case = ET.SubElement(
            suite, "testcase", classname="verify", name=step.name, time=f"{step.seconds:.3f}"
        )
        if not step.ok:
            failure = ET.SubElement(
                case, "failure", message=step.message.splitlines()[0] if step.message else ""
            )
            failure.text = step.message
        elif step.outcome:  # passed with a warning: JUnit has no such state, so a property and the text
            properties = ET.SubElement(case, "properties")
            ET.SubElement(properties, "property", name="outcome", value=step.outcome)
            ET.SubElement(case, "system-out").text = f"{step.outcome}: {step.message}"
    tree = ET.ElementTree(suite)
    ET.indent(tree)
    tree.write(junit_path, encoding="utf-8", xml_declaration=True)
    return json_path, junit_path
