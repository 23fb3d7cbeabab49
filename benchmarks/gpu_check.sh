#!/usr/bin/env bash
# Does the course run on a GPU, and how fast? One command, at most ~8 minutes on one GPU, one table.
#
#     bash benchmarks/gpu_check.sh                        # on a GPU machine, in the venv of requirements.txt
#     GPU_CHECK_DRY_RUN=1 bash benchmarks/gpu_check.sh    # tiny sizes on the CPU: checks the script itself
#
# Rows (benchmarks/gpu_check.py): every notebook under nbval in quick mode; the seed recipe for one
# epoch on a synthetic RGB folder; training images/s of the default model and of the seed's model;
# sampling time of 64 images with DDPM-1000 and DPM-Solver++-20; train() in two processes against one.
# Each row runs in its own process under its own time limit: a row that fails or runs out of time
# says so in the table, and the others still run. Exit status: the number of failed rows.
set -u
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python}
logs=$(mktemp -d)
rows=()

row() {  # row NAME SECONDS: run `gpu_check.py NAME` with a time limit, keep a line for the table
    local name=$1 limit=$2 start status line
    start=$(date +%s)
    timeout --kill-after=10 "$limit" "$PYTHON" benchmarks/gpu_check.py "$name" >"$logs/$name.log" 2>&1
    status=$?
    line=$(grep '^RESULT: ' "$logs/$name.log" | tail -n 1 | cut -c 9-)
    if [ "$status" -eq 124 ] || [ "$status" -eq 137 ]; then
        line="TIMED OUT after ${limit} s${line:+; $line}"
    elif [ "$status" -ne 0 ] && [ -z "$line" ]; then
        line="FAILED (exit $status): $(grep -v '^\s*$' "$logs/$name.log" | tail -n 1 | cut -c 1-150)"
    fi
    rows+=("$(printf '%-19s | %5s s | %s' "$name" "$(( $(date +%s) - start ))" "$line")")
    [ "$status" -eq 0 ] || failed=$(( failed + 1 ))
    echo "${rows[-1]}"  # as it goes, then again in the table
}

failed=0
"$PYTHON" -c "import torch; print('torch', torch.__version__, '| CUDA' if torch.cuda.is_available() else '| no CUDA', \
torch.cuda.get_device_name(0) if torch.cuda.is_available() else '')"
row notebooks 210
row recipe 75
row throughput-default 45
row throughput-seed 45
row sampling 60
row two-processes 60

echo
printf '%-19s | %7s | %s\n' "check" "time" "result"
printf -- '-%.0s' {1..100}; echo
printf '%s\n' "${rows[@]}"
echo "(logs: $logs)"
exit "$failed"
