#!/usr/bin/env python3
"""Parse an Autobahn|Testsuite index.json; exit 1 if any case failed.
A case passes only when behavior is OK, NON-STRICT or INFORMATIONAL and behaviorClose is OK or
INFORMATIONAL (stricter than wstest's own report, which does not paint e.g. "FAILED BY CLIENT" red:
that one means the client had to drop a TCP connection the server should have closed).
Usage: check_autobahn.py path/to/index.json"""
import collections, json, sys

PASS_BEHAVIOR = {"OK", "NON-STRICT", "INFORMATIONAL"}
PASS_CLOSE = {"OK", "INFORMATIONAL"}

path = sys.argv[1] if len(sys.argv) > 1 else "reports/servers/index.json"
with open(path) as f:
    index = json.load(f)   # {agent: {case_id: {behavior, behaviorClose, duration, remoteCloseCode, reportfile}}}
if not index:
    sys.exit(f"{path}: no agent in report")

total = bad = 0
for agent, cases in sorted(index.items()):
    if not cases:
        sys.exit(f"{agent}: no case ran")
    beh = collections.Counter(r["behavior"] for r in cases.values())
    close = collections.Counter(r["behaviorClose"] for r in cases.values())
    print(f"{agent}: {len(cases)} cases; behavior: " + ", ".join(
        f"{k}={beh.get(k, 0)}" for k in ("OK", "NON-STRICT", "INFORMATIONAL", "UNIMPLEMENTED", "FAILED"))
        + "".join(f", {k}={v}" for k, v in beh.items()
                  if k not in ("OK", "NON-STRICT", "INFORMATIONAL", "UNIMPLEMENTED", "FAILED")))
    print("  behaviorClose: " + ", ".join(f"{k}={v}" for k, v in sorted(close.items())))
    key = lambda c: [int(x) for x in c.split(".")]
    for cid in sorted(cases, key=key):
        r = cases[cid]
        if r["behavior"] not in PASS_BEHAVIOR or r["behaviorClose"] not in PASS_CLOSE:
            bad += 1
            print(f'  FAILED {cid}: behavior={r["behavior"]} behaviorClose={r["behaviorClose"]} '
                  f'remoteCloseCode={r["remoteCloseCode"]} see {r["reportfile"]}')
    total += len(cases)
print(f"autobahn: {total - bad} passed, {bad} failed")
if total == 0:
    print("autobahn: no case ran (a wrong case list?)")
sys.exit(1 if bad or total == 0 else 0)
