#!/usr/bin/env python3
"""Autobahn conformance helper for guestgate (driven by scripts/ci/autobahn.sh).

    autobahn.py run URL OUT.json [--reports DIR]
        Runs the Autobahn cases of categories 1-7 and 10 with kosoku's fuzzing client against
        URL and writes one compact verdict per case to OUT.json (and kosoku's Autobahn-style
        HTML/JSON reports to DIR, if given).

    autobahn.py check RESULTS.json --expected expected.json [--direct DIRECT.json]
                      [--label LABEL] [--direct-label NAME]
        Compares a run with the expected verdicts. Exit status 1 when any case got worse than
        expected (or is missing); cases that got better are listed as hints to refresh the
        file. With --direct, also lists where the relay differs from the echo server alone
        (called NAME in the output, default "echo alone").
        Ends with `autobahn: LABEL: N passed, M failed; against EXPECTED: W worse, B better`
        (LABEL defaults to "cases through guestgate").

    autobahn.py record RESULTS.json --expected expected.json [--upstream TEXT]
        Rewrites expected.json from a run (after a deliberate change; review the diff). TEXT
        names the upstream in the file's comment (default "an echo upstream").

    autobahn.py table RESULTS.json [--direct DIRECT.json]
        Prints the Markdown summary table used in README.md.

Only the standard library and kosoku (pinned in conformance/requirements.txt) are used.
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import json
import sys
from pathlib import Path

# What guestgate is checked against: the RFC 6455 core. 9.x (performance) and 12.x/13.x
# (permessage-deflate, which guestgate never negotiates) are left out.
CATEGORIES = ["1.*", "2.*", "3.*", "4.*", "5.*", "6.*", "7.*", "10.*"]

# Ranks: higher is worse. A case "got worse" when either rank went up.
BEHAVIOR_RANK = {
    "OK": 0,
    "INFORMATIONAL": 0,
    "NON-STRICT": 1,
    "UNIMPLEMENTED": 2,
    "FAILED": 3,
    "ERROR": 3,
    "MISSING": 3,
}
CLOSE_RANK = {
    "OK": 0,
    "INFORMATIONAL": 0,
    "WRONG CODE": 1,
    "FAILED BY CLIENT": 1,
    "UNCLEAN": 2,
    "FAILED": 2,
    "MISSING": 2,
}
# kosoku's own "passed": both verdicts acceptable.
ACCEPTABLE = {"OK", "NON-STRICT", "INFORMATIONAL"}

CATEGORY_NAMES = {
    "1": "Framing (text and binary)",
    "2": "Pings and pongs",
    "3": "Reserved bits",
    "4": "Reserved opcodes",
    "5": "Fragmentation",
    "6": "UTF-8 handling",
    "7": "Close handling",
    "10": "Miscellaneous (auto-fragmentation)",
}


def case_key(case_id: str) -> list[int]:
    return [int(p) for p in case_id.split(".")]


def passed(v: dict) -> bool:
    return v["behavior"] in ACCEPTABLE and v["behaviorClose"] in ACCEPTABLE


def verdict(v: dict) -> str:
    """One word per case, like Autobahn's report cell: the message verdict, or the close
    verdict when only the closing handshake was wrong."""
    if v["behavior"] in ACCEPTABLE and v["behaviorClose"] not in ACCEPTABLE:
        return f"FAILED ({v['behaviorClose']})"
    return v["behavior"]


def load(path: str) -> dict:
    return json.loads(Path(path).read_text())


def cases_of(doc: dict) -> dict[str, dict]:
    """The per-case verdicts of a results file or of expected.json, whose values are written
    compactly as "BEHAVIOR / CLOSE"."""
    cases = doc["cases"]
    out = {}
    for case_id, v in cases.items():
        if isinstance(v, str):
            behavior, _, close = v.partition(" / ")
            v = {"behavior": behavior, "behaviorClose": close or "OK"}
        out[case_id] = v
    return out


# ---------------------------------------------------------------------------------------- run


async def run(url: str, out: str, reports: str | None) -> int:
    import kosoku  # the venv's; imported here so `check` and `table` work without it
    from kosoku import FailureError, run_fuzzingclient

    try:
        results = await run_fuzzingclient(url, CATEGORIES, None, concurrency=1)
    except FailureError as failure:  # some cases failed; the results are still all there
        results = failure.results
    cases = {}
    for r in results:
        cases[r.case_id] = {
            "behavior": r.behavior.value,
            "behaviorClose": r.behavior_close.value,
            "remoteCloseCode": r.remote_close_code,
            "description": r.description,
        }
    version = getattr(kosoku, "__version__", None)
    if version is None:
        from importlib.metadata import version as dist_version

        version = dist_version("kosoku")
    ordered = dict(sorted(cases.items(), key=lambda kv: case_key(kv[0])))
    doc = {"kosoku": version, "url": url, "cases": ordered}
    Path(out).write_text(json.dumps(doc, indent=1) + "\n")
    if reports and results:
        from kosoku._report import write_reports

        write_reports(results, reports)
    ok = sum(passed(v) for v in cases.values())
    print(f"{url}: {len(cases)} cases, {ok} passed, {len(cases) - ok} failed")
    return 0


# -------------------------------------------------------------------------------------- check


def summary_line(name: str, cases: dict[str, dict]) -> str:
    ok = sum(passed(v) for v in cases.values())
    return f"{name}: {ok} passed, {len(cases) - ok} failed"


def check(results_path: str, expected_path: str, direct_path: str | None,
          label: str = "cases through guestgate", direct_label: str = "echo alone") -> int:
    got = cases_of(load(results_path))
    expected = cases_of(load(expected_path))
    worse, better = [], []
    for case_id in sorted(set(expected) | set(got), key=case_key):
        e = expected.get(case_id)
        g = got.get(case_id, {"behavior": "MISSING", "behaviorClose": "MISSING"})
        if e is None:
            # A case the expected file does not know (a new kosoku version): it must pass.
            if not passed(g):
                worse.append((case_id, "(not in expected.json)", g))
            continue
        rb = BEHAVIOR_RANK.get(g["behavior"], 3) - BEHAVIOR_RANK.get(e["behavior"], 3)
        rc = CLOSE_RANK.get(g["behaviorClose"], 2) - CLOSE_RANK.get(e["behaviorClose"], 2)
        if rb > 0 or rc > 0:
            worse.append((case_id, f"{e['behavior']} / {e['behaviorClose']}", g))
        elif rb < 0 or rc < 0:
            better.append((case_id, f"{e['behavior']} / {e['behaviorClose']}", g))

    def show(case_id: str, was: str, g: dict) -> str:
        desc = g.get("description") or expected.get(case_id, {}).get("description", "")
        desc = " ".join(desc.replace("<br>", " ").split())[:110]
        code = g.get("remoteCloseCode")
        return (
            f"  {case_id}: expected {was}, got {g['behavior']} / {g['behaviorClose']}"
            f" (close code {code}) -- {desc}"
        )

    if direct_path:
        direct = cases_of(load(direct_path))
        print(summary_line(f"autobahn ({direct_label})", direct))
        differ = [
            c
            for c in sorted(direct, key=case_key)
            if c in got
            and (got[c]["behavior"], got[c]["behaviorClose"])
            != (direct[c]["behavior"], direct[c]["behaviorClose"])
        ]
        if differ:
            print(f"  through guestgate, {len(differ)} cases differ from the {direct_label}:")

            def change(c: str) -> tuple:
                d, g = direct[c], got[c]
                return (d["behavior"], d["behaviorClose"], g["behavior"], g["behaviorClose"],
                        g["remoteCloseCode"])

            groups: dict[tuple, list[str]] = collections.defaultdict(list)
            for c in differ:
                groups[change(c)].append(c)
            for (db, dc, gb, gc, code), ids in sorted(groups.items(), key=lambda kv: -len(kv[1])):
                print(f"    {len(ids):3} x echo {db}/{dc} -> guestgate {gb}/{gc} (close {code}):"
                      f" {compress_ids(ids)}")
        else:
            print(f"  through guestgate, every case has the same verdicts as the {direct_label}")
    if better:
        print(f"{len(better)} cases did better than {expected_path}. After a"
              " deliberate change, refresh it with `bash scripts/ci/autobahn.sh --record` and"
              " review the diff (a case that only sometimes does better must stay as it is):")
        for item in better:
            print(show(*item))
    if worse:
        print(f"{len(worse)} cases did WORSE than {expected_path}:")
        for item in worse:
            print(show(*item))
    missing = {c: {"behavior": "MISSING", "behaviorClose": "MISSING"}
               for c in expected if c not in got}
    verdicts = summary_line(label, {**got, **missing})
    print(f"autobahn: {verdicts}; against {expected_path}:"
          f" {len(worse)} worse, {len(better)} better")
    return 1 if worse else 0


def compress_ids(ids: list[str]) -> str:
    """'6.3.1 6.3.2 6.4.1' grouped by section: '6.3.{1,2}, 6.4.1'."""
    groups: dict[str, list[str]] = collections.OrderedDict()
    for c in ids:
        head, _, tail = c.rpartition(".")
        groups.setdefault(head, []).append(tail)
    parts = []
    for head, tails in groups.items():
        if not head:
            parts.extend(tails)
        elif len(tails) == 1:
            parts.append(f"{head}.{tails[0]}")
        else:
            parts.append(f"{head}.{{{','.join(tails)}}}")
    return ", ".join(parts)


# ------------------------------------------------------------------------------ record, table


def record(results_path: str, expected_path: str, upstream: str = "an echo upstream") -> int:
    doc = load(results_path)
    cases = sorted(cases_of(doc).items(), key=lambda kv: case_key(kv[0]))
    lines = [
        "{",
        '  "_comment": "Autobahn verdicts (message / closing handshake) of guestgate relaying to'
        f" {upstream}, from scripts/ci/autobahn.sh. CI fails when a case does worse than"
        " recorded here. Refresh with `bash scripts/ci/autobahn.sh --record` and review the"
        ' diff.",',
        f'  "kosoku": {json.dumps(doc.get("kosoku"))},',
        '  "cases": {',
    ]
    for i, (case_id, v) in enumerate(cases):
        comma = "," if i + 1 < len(cases) else ""
        lines.append(f'    {json.dumps(case_id)}: "{v["behavior"]} / {v["behaviorClose"]}"{comma}')
    lines += ["  }", "}", ""]
    Path(expected_path).write_text("\n".join(lines))
    print(f"wrote {len(cases)} cases to {expected_path}; " + summary_line("autobahn", dict(cases)))
    return 0


def table(results_path: str, direct_path: str | None) -> int:
    got = cases_of(load(results_path))
    direct = cases_of(load(direct_path)) if direct_path else {}
    rows = collections.OrderedDict()
    for c in sorted(got, key=case_key):
        rows.setdefault(c.split(".")[0], []).append(c)
    head = "| category | cases | OK | non-strict | informational | failed |"
    sep = "|---|---:|---:|---:|---:|---:|"
    if direct:
        head += " echo alone: passed |"
        sep += "---:|"
    print(head)
    print(sep)
    totals = collections.Counter()
    for cat, ids in rows.items():
        n = collections.Counter()
        for c in ids:
            v = got[c]
            if not passed(v):
                n["failed"] += 1
            elif v["behavior"] == "NON-STRICT":
                n["non-strict"] += 1
            elif v["behavior"] == "INFORMATIONAL":
                n["informational"] += 1
            else:
                n["ok"] += 1
            n["direct"] += int(c in direct and passed(direct[c]))
        n["cases"] = len(ids)
        totals.update(n)
        name = f"{cat} {CATEGORY_NAMES.get(cat, '')}"
        cols = [n["cases"], n["ok"], n["non-strict"], n["informational"], n["failed"]]
        line = f"| {name} | " + " | ".join(map(str, cols)) + " |"
        if direct:
            line += f" {n['direct']} |"
        print(line)
    cols = [totals[k] for k in ("cases", "ok", "non-strict", "informational", "failed")]
    line = "| **total** | " + " | ".join(f"**{v}**" for v in cols) + " |"
    if direct:
        line += f" **{totals['direct']}** |"
    print(line)
    return 0


def main() -> int:
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    sub = p.add_subparsers(dest="cmd", required=True)
    r = sub.add_parser("run")
    r.add_argument("url")
    r.add_argument("out")
    r.add_argument("--reports")
    c = sub.add_parser("check")
    c.add_argument("results")
    c.add_argument("--expected", required=True)
    c.add_argument("--direct")
    c.add_argument("--label", default="cases through guestgate")
    c.add_argument("--direct-label", default="echo alone")
    rec = sub.add_parser("record")
    rec.add_argument("results")
    rec.add_argument("--expected", required=True)
    rec.add_argument("--upstream", default="an echo upstream")
    t = sub.add_parser("table")
    t.add_argument("results")
    t.add_argument("--direct")
    a = p.parse_args()
    if a.cmd == "run":
        return asyncio.run(run(a.url, a.out, a.reports))
    if a.cmd == "check":
        return check(a.results, a.expected, a.direct, a.label, a.direct_label)
    if a.cmd == "record":
        return record(a.results, a.expected, a.upstream)
    return table(a.results, a.direct)


if __name__ == "__main__":
    sys.exit(main())
