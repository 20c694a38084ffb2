"""Print ptxas' register/spill report for every CUDA kernel in a build log; fail on spills.

Reads the output of a build with `-Xptxas=-v` (setup.py adds it) and prints one row per kernel
entry and architecture. A kernel that spills to local memory fails the check unless its source
carries a comment `ptxas-spill-accepted: <kernel_name> <why>` (in csrc/cuda/), because every
kernel in this project sits in a training hot path.

usage: python .ci/ptxas_report.py BUILD_LOG [SOURCE_DIR]
"""

import re
import subprocess
import sys
from pathlib import Path

ENTRY = re.compile(r"Compiling entry function '([^']+)' for '(sm_\d+a?)'")
PROPS = re.compile(r"Function properties for (\S+)")
SPILL = re.compile(r"(\d+) bytes stack frame, (\d+) bytes spill stores, (\d+) bytes spill loads")
USED = re.compile(r"Used (\d+) registers")
ACCEPT = re.compile(r"ptxas-spill-accepted:\s*(\w+)")


def demangle(names):
    try:
        out = subprocess.run(["c++filt"], input="\n".join(names), capture_output=True, text=True,
                             check=True).stdout.splitlines()
        return dict(zip(names, out, strict=True))
    except (OSError, subprocess.CalledProcessError, ValueError):
        return {n: n for n in names}


def base_name(pretty):
    """'void srkd::foo_kernel<float, 4>(float*, ...)' -> 'foo_kernel'."""
    head = pretty.split("(")[0]
    head = re.sub(r"<.*>", "", head)
    return head.split()[-1].split("::")[-1]


def parse(log_text):
    kernels = {}  # (mangled, arch) -> dict
    entry = None
    props_for = None
    for line in log_text.splitlines():
        if m := ENTRY.search(line):
            entry = (m.group(1), m.group(2))
            kernels.setdefault(entry, {"regs": None, "stack": 0, "spill_st": 0, "spill_ld": 0})
        elif m := PROPS.search(line):
            props_for = m.group(1)
        elif (m := SPILL.search(line)) and entry and props_for == entry[0]:
            k = kernels[entry]
            k["stack"], k["spill_st"], k["spill_ld"] = map(int, m.groups())
        elif (m := USED.search(line)) and entry:
            kernels[entry]["regs"] = int(m.group(1))
    return kernels


def main():
    log = Path(sys.argv[1]).read_text(errors="replace")
    src = Path(sys.argv[2] if len(sys.argv) > 2 else "csrc/cuda")
    accepted = set()
    for f in list(src.rglob("*.cu")) + list(src.rglob("*.cuh")):
        accepted |= set(ACCEPT.findall(f.read_text(errors="replace")))
    kernels = parse(log)
    if not kernels:
        print("ptxas report: no kernel entries found in the build log (was -Xptxas=-v passed?)")
        return 1
    pretty = demangle(sorted({m for m, _ in kernels}))
    failures = 0
    print(f"{'arch':7} {'regs':>4} {'stack':>6} {'spill st':>8} {'spill ld':>8}  kernel")
    for (mangled, arch), k in sorted(kernels.items(), key=lambda kv: (pretty[kv[0][0]], kv[0][1])):
        name = pretty[mangled]
        verdict = ""
        if k["spill_st"] or k["spill_ld"]:
            if base_name(name) in accepted:
                verdict = "  (spills accepted: see the comment at the kernel)"
            else:
                verdict = "  <-- SPILLS: fix, or explain with 'ptxas-spill-accepted: <name> <why>'"
                failures += 1
        short = name if len(name) < 110 else name[:107] + "..."
        print(f"{arch:7} {k['regs'] or 0:>4} {k['stack']:>6} {k['spill_st']:>8} {k['spill_ld']:>8}  {short}{verdict}")
    print(f"ptxas report: {len(kernels)} kernel builds, {failures} with unexplained spills")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
