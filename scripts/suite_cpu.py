"""Where the suite's CPU goes: sums a SUITE_CPU_REPORT folder by module.

    SUITE_CPU_REPORT=/tmp/cpu make test   (the folder must exist)
    python scripts/suite_cpu.py /tmp/cpu [how many modules, 30]
"""

from __future__ import annotations

import sys
from collections import Counter
from pathlib import Path


def main() -> int:
    folder, shown = Path(sys.argv[1]), int(sys.argv[2]) if len(sys.argv) > 2 else 30
    cpu: Counter[str] = Counter()
    wall: Counter[str] = Counter()
    tests: Counter[str] = Counter()
    for report in folder.glob("*.tsv"):
        for line in report.read_text().splitlines():
            nodeid, cpu_s, wall_s = line.split("\t")
            module = nodeid.split("::")[0]
            cpu[module] += float(cpu_s)
            wall[module] += float(wall_s)
            tests[module] += 1
    print(f"{sum(cpu.values()):8.1f} s CPU, {sum(wall.values()):8.1f} s wall, "
          f"{sum(tests.values())} tests")
    for module, seconds in cpu.most_common(shown):
        print(f"{seconds:8.1f} {wall[module]:8.1f} {tests[module]:5d}  {module}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
