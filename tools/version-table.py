#!/usr/bin/env python3
"""What libvirt did on each scenario, side by side across runs.

Reads the outcomes of `mflab run --backend libvirt --format json` runs
(one file per libvirt version) and prints a Markdown table: per scenario,
what each run's libvirt did (refused at define, failed at start, or what
L2 saw) in libvirt's own words, and whether the scenario's expectations
for that version held. Rows where every run did the same are left out
unless --all is given.

    tools/version-table.py "libvirt 9.0"=host.json "libvirt 11.3"=d13.json
"""
import json
import re
import sys


def what_libvirt_did(o):
    error = o.get("error")
    if error:
        # QEMU's timestamps differ from run to run; the words do not.
        error = re.sub(r"\d{4}-\d\d-\d\d[T ][\d:.]+Z?:? ?", "", error)
        return error.replace("|", "\\|")
    steps = o.get("steps") or []
    failed_steps = [s["error"] for s in steps if s.get("error")]
    if failed_steps:
        return "steps: " + " / ".join(failed_steps).replace("|", "\\|")
    def functions(view):
        return ", ".join(
            f'{f["vendor"][2:]}:{f["device"][2:]}@{f["bdf"][5:]}'
            for f in view
            if f["class"].startswith(("0x02", "0x03", "0x04"))
        ) or "none of the functions"

    if o.get("l2_guest"):
        return "L2 saw " + functions(o["l2_guest"])
    if o.get("l2_qmp"):
        return "QMP saw " + functions(o["l2_qmp"])
    if steps:
        return f"all {len(steps)} steps went through"
    return "no L2 (plan depth, or refused before libvirt)"


def main(args):
    show_all = "--all" in args
    runs = [a.split("=", 1) for a in args if a != "--all"]
    if len(runs) < 2 or any(len(r) != 2 for r in runs):
        sys.exit(__doc__)
    tables = []
    for label, path in runs:
        with open(path) as f:
            tables.append((label, {o["scenario"]: o for o in json.load(f)}))
    names = sorted(set().union(*(t.keys() for _, t in tables)))
    print("| scenario | " + " | ".join(label for label, _ in tables) + " |")
    print("|---" * (len(tables) + 1) + "|")
    for name in names:
        cells = []
        for _, t in tables:
            o = t.get(name)
            cells.append(
                "-" if o is None else what_libvirt_did(o) + ("" if o["passed"] else " **(expectation failed)**")
            )
        if show_all or len(set(cells)) > 1:
            print(f"| {name} | " + " | ".join(cells) + " |")


if __name__ == "__main__":
    main(sys.argv[1:])
