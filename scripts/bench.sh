#!/usr/bin/env bash
# Sets up Threadline with its benchmark tools, runs every benchmark of bench/ and renders the report.
#
#   scripts/bench.sh                 the issue's sizes; results in bench/results/, page docs/benchmarks.md
#   scripts/bench.sh --quick         small sizes, a smoke run; results and page under bench/results/quick/
#   scripts/bench.sh --only NAME...  only these (webhook_ack turn_overhead memory_search locomo prompt_size scale
#                                    recall_latency supersession);
#                                    the report still shows the last results of the others
#
# Every benchmark talks to 127.0.0.1 only. A failing benchmark does not stop the others; the report is
# rendered from whatever results exist and the script exits non-zero if any benchmark failed.
set -euo pipefail
cd "$(dirname "$0")/.."

quick=0
only=()
while [ $# -gt 0 ]; do
  case "$1" in
    --quick) quick=1 ;;
    --only) shift; while [ $# -gt 0 ] && [ "${1#--}" = "$1" ]; do only+=("$1"); shift; done; continue ;;
    -h|--help) sed -n '2,10p' "$0"; exit 0 ;;
    *) echo "bench: unknown argument $1 (see --help)" >&2; exit 2 ;;
  esac
  shift
done

scripts/setup.sh
.venv/bin/uv pip install --quiet --python .venv/bin/python -e ".[test,bench]"

if [ "$quick" = 1 ]; then
  out=bench/results/quick
  page=bench/results/quick/benchmarks.md
  locomo_file=$(ls ../shared/data/locomo/*.json 2>/dev/null | head -n 1 || true)
  declare -A sizes=(
    [webhook_ack]="--requests 60 --concurrency 1 4 --warmup 12"
    [turn_overhead]="--customers 50 --memories 500 --turns 10 --warmup 2 --distinct-texts 100"
    [memory_search]="--sizes 100 1000 --queries 30 --warmup 5 --distinct-texts 100 --platform-size 100"
    [locomo]="${locomo_file} --limit-questions 5"
    [prompt_size]="--turns 40 --checkpoints 10 20 40"
    [scale]="--quick"
    [recall_latency]="--sizes 100 1000 --queries 30 --warmup 5 --distinct-texts 200"
    [supersession]="--cases 40"
  )
else
  out=bench/results
  page=docs/benchmarks.md
  declare -A sizes=(
    [webhook_ack]="--requests 1000 --concurrency 1 16 64"
    [turn_overhead]="--customers 10000 --memories 100000 --turns 300"
    [memory_search]="--sizes 1000 10000 100000 --queries 300"
    [locomo]=""
    [prompt_size]="--turns 1000 --checkpoints 10 30 100 300 1000"
    [scale]=""
    [recall_latency]="--sizes 100 10000 --queries 300"
    [supersession]="--cases 240"
  )
fi
names=(webhook_ack turn_overhead memory_search locomo prompt_size scale recall_latency supersession)
if [ ${#only[@]} -gt 0 ]; then names=("${only[@]}"); fi

mkdir -p "$out/logs"
failed=()
started=$SECONDS
for name in "${names[@]}"; do
  if [ -z "${sizes[$name]+set}" ]; then echo "bench: no benchmark called $name" >&2; exit 2; fi
  target="$out"
  if [ "$name" = locomo ]; then target="$out/locomo.json"; fi  # bench/locomo.py takes a file
  log="$out/logs/$name.log"
  echo "== $name ${sizes[$name]}"
  t0=$SECONDS
  # shellcheck disable=SC2086  # the sizes are separate words on purpose
  if .venv/bin/python -m "bench.$name" ${sizes[$name]} --out "$target" 2>"$log"; then
    echo "   $name done in $((SECONDS - t0)) s"
  else
    echo "   $name FAILED after $((SECONDS - t0)) s; the end of $log:" >&2
    tail -n 20 "$log" >&2
    failed+=("$name")
  fi
done
.venv/bin/python -m bench.report --results "$out" --out "$page"
.venv/bin/python -m bench.scale_report --results "$out" --page "$page"  # the scale-out section
if [ -f "$out/recall_latency.json" ]; then  # one customer's recall as their memories grow
  .venv/bin/python -m bench.recall_latency --out "$out" --page "$page" --page-only
fi
echo "benchmarks took $((SECONDS - started)) s in all"
if [ ${#failed[@]} -gt 0 ]; then
  echo "bench: failed: ${failed[*]}" >&2
  exit 1
fi
