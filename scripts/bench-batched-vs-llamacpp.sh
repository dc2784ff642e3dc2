#!/usr/bin/env bash
# Batched decoding of llmrt and llama.cpp side by side: B sequences, each after its own P-token
# prompt, decoded together for N steps (one forward pass per step); aggregate tokens/s per B.
# The two programs run alternately (ours, theirs, ours, theirs, ...) so both see the same machine
# load; medians over the alternations and the ratios ours / llama.cpp are printed.
#
#   scripts/bench-batched-vs-llamacpp.sh [-t 2] [-p 128] [-n 32] [-r 3] [-a 1] [-B 1,2,4,8] MODEL.gguf...
#
# llama.cpp's figures come from `$LLCPP_BENCH --batched` (default /work/shared/tools/llcpp-bench.sh),
# ours from `target/release/llmrt bench --batch` (built if missing).
set -euo pipefail
threads=2; pp=128; tg=32; reps=3; alts=1; bs=1,2,4,8
while getopts "t:p:n:r:a:B:" o; do
  case $o in
    t) threads=$OPTARG ;; p) pp=$OPTARG ;; n) tg=$OPTARG ;; r) reps=$OPTARG ;; a) alts=$OPTARG ;; B) bs=$OPTARG ;;
    *) sed -n 2,10p "$0"; exit 2 ;;
  esac
done
shift $((OPTIND - 1))
[ $# -ge 1 ] || { sed -n 2,10p "$0"; exit 2; }
root=$(cd "$(dirname "$0")/.." && pwd)
llmrt=$root/target/release/llmrt
[ -x "$llmrt" ] || (cd "$root" && cargo build --release >&2)
llcpp=${LLCPP_BENCH:-/work/shared/tools/llcpp-bench.sh}

median() { tr ' ' '\n' | grep -v '^$' | sort -g | awk '{a[NR]=$1} END {if (NR % 2) print a[(NR+1)/2]; else print (a[NR/2]+a[NR/2+1])/2}'; }
# The figure for batch $1 in a "... B1=12.3 B2=..." line.
figure() { grep -o " B$1=[0-9.]*" | cut -d= -f2; }

grep -m1 'model name' /proc/cpuinfo | sed 's/.*: /cpu: /'
echo "load average: $(cut -d' ' -f1-3 /proc/loadavg)  threads=$threads prompt=$pp steps=$tg reps=$reps alternations=$alts"
printf '%-40s %3s | %9s %9s | %6s\n' model B llmrt llama.cpp ratio
for model in "$@"; do
  cat "$model" >/dev/null
  ours=(); theirs=()
  for ((a = 0; a < alts; a++)); do
    ours+=("$("$llmrt" bench -m "$model" -t "$threads" -p "$pp" -n "$tg" -r "$reps" --batch "$bs" 2>/dev/null || echo failed)")
    theirs+=("$("$llcpp" --batched "$model" "$threads" "$pp" "$tg" "$reps" "$bs" || echo failed)")
  done
  for b in ${bs//,/ }; do
    o=$(for l in "${ours[@]}"; do figure "$b" <<<"$l"; done | median)
    t=$(for l in "${theirs[@]}"; do figure "$b" <<<"$l"; done | median)
    printf '%-40s %3s | %9.1f %9.1f | %6.2f\n' "$(basename "$model")" "$b" "$o" "$t" \
      "$(awk -v a="$o" -v b="$t" 'BEGIN {print (b > 0) ? a / b : 0}')"
  done
done
