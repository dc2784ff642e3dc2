#!/usr/bin/env bash
# Side-by-side speed of llmrt and llama.cpp on this machine: same GGUF file, same thread count,
# the two programs run alternately (ours, theirs, ours, theirs, ...) so that both see the same
# machine load, then the medians and the ratios ours / llama.cpp are printed.
#
#   scripts/bench-vs-llamacpp.sh [-t "1 2"] [-p 512] [-n 128] [-r 3] [-a 1] [-b BASE] MODEL.gguf...
#     -t  thread counts to measure (default "1 2")
#     -p  prompt tokens (one batch), -n generated tokens, -r repetitions inside each program
#     -a  alternations: how many times each program is started per file and thread count
#     -b  also run BASE, another llmrt binary (e.g. an older commit's), in the same alternation,
#         and print its figures and ratios to llama.cpp: a before/after comparison in one run
#
# llama.cpp's figures come from $LLCPP_BENCH (default /work/shared/tools/llcpp-bench.sh, which
# builds llama-cpp-python once), ours from target/release/llmrt (built if missing).
# Peak RSS is the maximum resident set of each whole process (GNU time when available; for
# llama.cpp that includes the Python interpreter, about 10-15 MiB of it).
set -euo pipefail
threads="1 2"; pp=512; tg=128; reps=3; alts=1; base=
while getopts "t:p:n:r:a:b:" o; do
  case $o in
    t) threads=$OPTARG ;; p) pp=$OPTARG ;; n) tg=$OPTARG ;; r) reps=$OPTARG ;; a) alts=$OPTARG ;; b) base=$OPTARG ;;
    *) sed -n 2,16p "$0"; exit 2 ;;
  esac
done
shift $((OPTIND - 1))
[ $# -ge 1 ] || { sed -n 2,16p "$0"; exit 2; }
root=$(cd "$(dirname "$0")/.." && pwd)
llmrt=$root/target/release/llmrt
[ -x "$llmrt" ] || (cd "$root" && cargo build --release >&2)
llcpp=${LLCPP_BENCH:-/work/shared/tools/llcpp-bench.sh}
timer=()
[ -x /usr/bin/time ] && timer=(/usr/bin/time -f 'maxrss_kib=%M')

# Runs one program, prints "load pp tg rss_mib" (rss "-" when unknown).
run_one() {
  local out rss
  out=$("${timer[@]}" "$@" 2>/tmp/bench-vs-llamacpp.$$ || true)
  rss=$(grep -o 'maxrss_kib=[0-9]*' /tmp/bench-vs-llamacpp.$$ | tail -1 | cut -d= -f2 || true)
  rm -f /tmp/bench-vs-llamacpp.$$
  local load p t
  load=$(grep -o 'load_s=[0-9.]*' <<<"$out" | cut -d= -f2)
  p=$(grep -o "pp$pp=[0-9.]*" <<<"$out" | cut -d= -f2)
  t=$(grep -o "tg$tg=[0-9.]*" <<<"$out" | cut -d= -f2)
  [ -n "$p" ] || { echo "failed: $* -> $out" >&2; echo "nan nan nan nan"; return; }
  echo "$load $p $t ${rss:+$((rss / 1024))}"
}

median() { tr ' ' '\n' | grep -v '^$' | sort -g | awk '{a[NR]=$1} END {if (NR % 2) print a[(NR+1)/2]; else print (a[NR/2]+a[NR/2+1])/2}'; }

grep -m1 'model name' /proc/cpuinfo | sed 's/.*: /cpu: /'
echo "load average: $(cut -d' ' -f1-3 /proc/loadavg)  (the machine is shared: figures move with its load)"
printf '%-40s %2s | %8s %8s %6s | %8s %8s %6s | %7s %7s | %6s %6s' model t "pp$pp" "tg$tg" load \
  "ll-pp" "ll-tg" ll-ld "pp x" "tg x" rss rss-ll
[ -z "$base" ] && echo || printf ' | %8s %8s %7s %7s\n' base-pp base-tg "base pp x" "base tg x"
for model in "$@"; do
  # Both programs map the file: read it once first, so that neither pays for a cold page cache.
  cat "$model" >/dev/null
  for t in $threads; do
    ours=(); theirs=(); before=()
    for ((a = 0; a < alts; a++)); do
      ours+=("$(run_one "$llmrt" bench -m "$model" -t "$t" -p "$pp" -n "$tg" -r "$reps")")
      theirs+=("$(run_one "$llcpp" "$model" "$t" "$pp" "$tg" "$reps")")
      [ -z "$base" ] || before+=("$(run_one "$base" bench -m "$model" -t "$t" -p "$pp" -n "$tg" -r "$reps")")
    done
    col() { local i=$1; shift; for r in "$@"; do echo "$r" | cut -d' ' -f"$i"; done | median; }
    ol=$(col 1 "${ours[@]}"); op=$(col 2 "${ours[@]}"); ot=$(col 3 "${ours[@]}"); orss=$(col 4 "${ours[@]}")
    tl=$(col 1 "${theirs[@]}"); tp=$(col 2 "${theirs[@]}"); tt=$(col 3 "${theirs[@]}"); trss=$(col 4 "${theirs[@]}")
    printf '%-40s %2s | %8.1f %8.1f %6.3f | %8.1f %8.1f %6.3f | %7.2f %7.2f | %6s %6s' \
      "$(basename "$model")" "$t" "$op" "$ot" "$ol" "$tp" "$tt" "$tl" \
      "$(awk -v a="$op" -v b="$tp" 'BEGIN {print a / b}')" \
      "$(awk -v a="$ot" -v b="$tt" 'BEGIN {print a / b}')" "${orss:--}" "${trss:--}"
    if [ -z "$base" ]; then echo; else
      bp=$(col 2 "${before[@]}"); bt=$(col 3 "${before[@]}")
      printf ' | %8.1f %8.1f %7.2f %7.2f\n' "$bp" "$bt" \
        "$(awk -v a="$bp" -v b="$tp" 'BEGIN {print a / b}')" "$(awk -v a="$bt" -v b="$tt" 'BEGIN {print a / b}')"
    fi
  done
done
