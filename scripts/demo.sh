#!/usr/bin/env bash
# The main job on the netns provider: up, reference solution, grade (signed with the centre
# key, made on first use), proof report, portfolio bundle verified offline, down.
# KEEP=1 keeps the instance up afterwards. Exit 0 only with full marks.
set -euo pipefail
cd "$(dirname "$0")/.."
LABKIT=".venv/bin/labkit"
NAME="${DEMO_INSTANCE:-demo}"
OUT="out/demo"
mkdir -p "$OUT"
if $LABKIT status "$NAME" >/dev/null 2>&1; then $LABKIT down "$NAME"; fi
if ! $LABKIT keys show >/dev/null 2>&1; then $LABKIT keys init --centre "${CENTRE:-Centre de démonstration labkit}"; fi
$LABKIT up routing-multisite --instance "$NAME" --seed "${SEED:-42}" --candidate "${CANDIDATE:-Candidat démo}"
if [ "${KEEP:-0}" != 1 ]; then trap '$LABKIT down "$NAME"' EXIT; fi
$LABKIT solve "$NAME"
rc=0
$LABKIT grade "$NAME" --save-json "$OUT/grade.json" || rc=$?
run_id=$(.venv/bin/python -c 'import json,sys; print(json.load(open(sys.argv[1]))["run_id"])' "$OUT/grade.json")
$LABKIT report "$run_id" --format json -o "$OUT/report.json"
$LABKIT report "$run_id" --format html -o "$OUT/report.html"
$LABKIT report "$run_id" --format html --lang en -o "$OUT/report.en.html"
$LABKIT report "$run_id" --format pdf -o "$OUT/report.pdf"
$LABKIT bundle "$run_id" -o "$OUT/portfolio.zip"
$LABKIT keys show --pub > "$OUT/centre.pub"
$LABKIT verify "$OUT/portfolio.zip" --key "$OUT/centre.pub"
echo "demo: proof report in $OUT/report.html and report.pdf, signed portfolio in $OUT/portfolio.zip (run $run_id)"
exit $rc
