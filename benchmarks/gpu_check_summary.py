"""The short table that benchmarks/gpu_check.sh prints last: test counts, failures, GPU timings."""

import json
import sys
import xml.etree.ElementTree as ET
from pathlib import Path


def tests_line(xml_path: Path) -> tuple[str, list[str]]:
    if not xml_path.is_file():
        return "tests: no result file (did pytest start?)", []
    root = ET.parse(xml_path).getroot()
    suite = root if root.tag == "testsuite" else root.find("testsuite")
    n = int(suite.get("tests", 0))
    fail = int(suite.get("failures", 0)) + int(suite.get("errors", 0))
    skip = int(suite.get("skipped", 0))
    failed = [f"{c.get('classname')}::{c.get('name')}" for c in suite.iter("testcase")
              if c.find("failure") is not None or c.find("error") is not None]
    return f"CUDA tests: {n - fail - skip} passed, {fail} failed, {skip} skipped", failed


def bench_rows(json_path: Path) -> list[str]:
    if not json_path.is_file():
        return ["benchmarks: no result file"]
    data = json.loads(json_path.read_text())
    rows = [f"{'benchmark':70} {'mean ms':>10} {'min ms':>10}"]
    for b in data.get("benchmarks", []):
        s = b["stats"]
        rows.append(f"{b['fullname'][-70:]:70} {s['mean'] * 1e3:>10.3f} {s['min'] * 1e3:>10.3f}")
        for key, value in sorted(b.get("extra_info", {}).items()):
            rows.append(f"    {key} = {value}")
    return rows


def main() -> int:
    log = Path(sys.argv[1])
    line, failed = tests_line(log / "cuda-tests.xml")
    ptxas = (log / "ptxas.txt").read_text().splitlines()[-1:] if (log / "ptxas.txt").is_file() else []
    print("\n".join(["", "=" * 30 + " GPU check " + "=" * 30, *ptxas, line,
                     *[f"  FAILED {f}" for f in failed], *bench_rows(log / "gpu-bench.json")]))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
