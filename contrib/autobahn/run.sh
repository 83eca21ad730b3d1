#!/usr/bin/env bash
# Runs the Autobahn test suite's fuzzing client against examples/ws_echo.rs, an echo server with
# chatd's WebSocket settings, and prints pass/non-strict/fail counts per section. Not part of CI
# (it needs Python 2.7 and PyPI). See docs/development.md, "Autobahn".
#
#   contrib/autobahn/run.sh [CHATD FLAGS]     e.g. contrib/autobahn/run.sh --max-line 4096
#
# WSTEST names the wstest program (default: wstest on PATH, else /tmp/ab-venv/bin/wstest).
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
wstest=${WSTEST:-$(command -v wstest || echo /tmp/ab-venv/bin/wstest)}
[ -x "$wstest" ] || { echo "no wstest: pip install autobahntestsuite under Python 2.7 (see docs/development.md)" >&2; exit 1; }

cargo build --locked --quiet --manifest-path "$root/Cargo.toml" --example ws_echo
"$root/target/debug/examples/ws_echo" 127.0.0.1:9001 "$@" &
echo_pid=$!
trap 'kill "$echo_pid" 2>/dev/null || true' EXIT
for _ in $(seq 50); do
    (exec 3<>/dev/tcp/127.0.0.1/9001) 2>/dev/null && break
    kill -0 "$echo_pid" 2>/dev/null || { echo "ws_echo did not start" >&2; exit 1; }
    sleep 0.1
done

cd "$here"
rm -rf reports
"$wstest" -m fuzzingclient -s fuzzingclient.json
python3 - reports/index.json <<'PY'
import collections, json, sys
index = json.load(open(sys.argv[1]))
for agent, cases in index.items():
    sections = collections.OrderedDict()
    key = lambda case: [int(part) for part in case.split(".")]
    for case in sorted(cases, key=key):
        result = cases[case]
        section = case.split(".")[0]
        counts = sections.setdefault(section, collections.Counter())
        counts[result["behavior"]] += 1
        if result["behaviorClose"] not in ("OK", "INFORMATIONAL"):
            counts["close " + result["behaviorClose"]] += 1
    print(agent)
    for section, counts in sections.items():
        print("  %-3s %s" % (section, ", ".join("%s %d" % kv for kv in sorted(counts.items()))))
    failed = [c for c in sorted(cases, key=key) if cases[c]["behavior"] == "FAILED"]
    print("  failed cases: %s" % (" ".join(failed) or "none"))
PY
