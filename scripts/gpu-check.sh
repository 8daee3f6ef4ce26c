#!/usr/bin/env bash
# Runs on the GPU machine (no Go there): the GPU test binary, the
# transformers reference for real-shape models, and the benchmark, from
# binaries built here into devbin1/ (see docs/perf.md for how).
#   scripts/gpu-check.sh tests|sanitizer|server|engine|reference|reference-llama|reference-window|bench|bench-phi3|timing|conc|table|kv64|ab|f16w|int8|gemmq|normq8|envab|gemm-tile|pipeline|kprofile|ncu|profile ...
# GPU tests fail rather than skip here (WORKER_TEST_REQUIRE_GPU=1); fixtures
# are read from $WORKER_FIXTURES, else $BIN/fixtures when present.
# conc runs the issue-10 workload (-p 128 -n 128, 1..64 streams) on both
# real shapes with $bin/worker-orcd and, when $OLD names another binary, with
# it too, side by side.
set -uo pipefail
bin=${BIN:-devbin1}
export WORKER_KERNEL_CACHE=${WORKER_KERNEL_CACHE:-/tmp/worker-kernels}
export WORKER_TEST_REQUIRE_GPU=1
if [ -z "${WORKER_FIXTURES:-}" ] && [ -d "$bin/fixtures" ]; then export WORKER_FIXTURES=$PWD/$bin/fixtures; fi
out=${OUT:-/tmp/out}
mkdir -p "$out"
synth() { # shape file
  [ -f "$2" ] || "$bin/synth" --shape "$1" --type Q4_K_M --vocab builtin -o "$2" | tail -1
}
for step in "$@"; do
case $step in
tests)
  "$bin/cuda.test" -test.v -test.timeout 400s 2>&1 | tee "$out/cuda-tests.log" | grep -E "^(--- |FAIL|ok|PASS)|worst|VRAM|mmt_" ;;
sanitizer)
  san=/usr/local/cuda/bin/compute-sanitizer
  if [ -x "$san" ]; then
    "$san" --tool memcheck --error-exitcode 9 "$bin/cuda.test" -test.run 'Parity$|AttentionParity|TensorCoreDecode|Int8Decode|NormQ8|GemmQ|PagedCache|F16Weights' 2>&1 | tail -5
    echo "compute-sanitizer memcheck exit status: $?"
  else echo "compute-sanitizer not found"; fi ;;
timing)
  WORKER_TEST_TIMING=1 "$bin/cuda.test" -test.v -test.run TestDecodeKernelTiming 2>&1 | tee "$out/timing.log" | grep -E "timing|FAIL" ;;
ncu)
  # DRAM throughput of the decode matrix kernels (clocks left alone).
  ncu=$(command -v ncu || ls /usr/local/cuda/bin/ncu 2>/dev/null)
  WORKER_TEST_TIMING=ncu timeout 300 "$ncu" --clock-control none --kernel-name regex:'^mm[qt]1?_' \
    --metrics gpu__time_duration.sum,dram__throughput.avg.pct_of_peak_sustained_elapsed,dram__bytes_read.sum.per_second \
    --csv "$bin/cuda.test" -test.run TestDecodeKernelTiming >"$out/ncu.csv" 2>&1; echo "ncu exit $?"
  python3 - "$out/ncu.csv" <<'PY'
import csv, sys
rows = [r for r in csv.reader(open(sys.argv[1])) if len(r) > 10]
if not rows: sys.exit()
h = rows[0]; k, mn, mv = h.index("Kernel Name"), h.index("Metric Name"), h.index("Metric Value")
seen = {}
for r in rows[1:]:
    seen.setdefault((r[0], r[k]), {})[r[mn]] = r[mv]
for (i, name), m in seen.items():
    print("ncu %-4s %-8s %10s ns  DRAM %5s %%  %s" % (i, name, m.get("gpu__time_duration.sum"), m.get("dram__throughput.avg.pct_of_peak_sustained_elapsed"), m.get("dram__bytes_read.sum.per_second")))
PY
  ;;
profile)
  # Full ncu sections for one launch of three decode kernels (LM head Q8_0,
  # Qwen gate Q5_0, Phi-3 down Q6_K). The timing test launches each mmt_
  # kernel six times per T (auto, 2tok, P=1, 2, 4, 8) for T = 1, 8, 64:
  # PROFILE_SKIP=12 (the default) is T=64 auto, 0 is T=1 auto.
  ncu=$(command -v ncu || ls /usr/local/cuda/bin/ncu 2>/dev/null)
  skip=${PROFILE_SKIP:-12}
  for k in mmt_q8_0 mmt_q5_0 mmt_q6_k; do
    WORKER_TEST_TIMING=ncu timeout 120 "$ncu" --clock-control none --kernel-name "$k" --launch-skip "$skip" --launch-count 1 \
      --section SpeedOfLight --section Occupancy --section LaunchStats --section WarpStateStats --section MemoryWorkloadAnalysis \
      "$bin/cuda.test" -test.run TestDecodeKernelTiming >"$out/profile-$k-$skip.txt" 2>&1; echo "ncu $k exit $?"
  done ;;
conc)
  synth qwen2.5-0.5b /tmp/q05.gguf
  synth phi3-mini-4k /tmp/phi3.gguf
  for m in /tmp/q05.gguf /tmp/phi3.gguf; do
    for b in ${OLD:-} "$bin/worker-orcd"; do
      "$b" bench --model "$m" --device cuda -p 128 -n 128 --concurrency 1,8,32,64 --json >"$out/bench-$(basename "$b")-$(basename "$m" .gguf).json" 2>"$out/bench.err" ||
        { echo "bench $b $m failed"; tail -3 "$out/bench.err"; }
    done
  done
  python3 - "$out" <<'PY'
import glob, json, os, sys
for f in sorted(glob.glob(sys.argv[1] + "/bench-*.json")):
    r = json.load(open(f))
    lv = " ".join("%d:%.0f/%.0f(ttft %.0f/%.0f itl %.1f/%.1f)" % (l["requests"], l["generated_tokens_per_s"], l.get("all_decoding_tokens_per_s", 0), l.get("ttft_p50_ms", 0), l.get("ttft_p99_ms", 0), l.get("itl_p50_ms", 0), l.get("itl_p99_ms", 0)) for l in r["concurrency"])
    print("%-32s prefill %7.0f decode %6.1f | %s" % (os.path.basename(f)[6:-5], r["prefill_tokens_per_s"], r["decode_tokens_per_s"], lv))
PY
  ;;
reference)
  # 64-token prompt, 16 greedy tokens, for each real shape at F16.
  ids=$(python3 -c "print(','.join(str((i*7919+13)%30000) for i in range(64)))")
  for shape in qwen2.5-0.5b phi3-mini-4k; do
    m=/tmp/$shape-F16.gguf
    "$bin/synth" --shape "$shape" --type F16 --vocab builtin -o "$m" | tail -1
    "$bin/worker-orcd" score --model "$m" --device cuda --ids "$ids,0" --logits-out "$out/$shape-logits.npy" --json >/dev/null || echo "score failed"
    "$bin/worker-orcd" generate --model "$m" --device cuda --prompt-ids "$ids" --temperature 0 -n 16 --ignore-eos --json >"$out/$shape-gen.json" || echo "generate failed"
    python3 scripts/torch_reference.py export --gguf "$m" --out "/tmp/$shape-hf" &&
    python3 scripts/torch_reference.py compare --hf "/tmp/$shape-hf" --ids "$ids" --worker-logits "$out/$shape-logits.npy" \
      --worker-generate "$out/$shape-gen.json" --steps 16; echo "reference $shape: exit $?"
    rm -rf "$m" "/tmp/$shape-hf"
  done ;;
reference-llama)
  # The Llama architecture (interleaved RoPE; the export undoes GGUF's Q/K
  # permutation) against transformers, on the llama-tiny shape at F16.
  ids=$(python3 -c "print(','.join(str((i*7919+13)%30000) for i in range(48)))")
  m=/tmp/llama-tiny-F16.gguf
  "$bin/synth" --shape llama-tiny --type F16 --vocab builtin -o "$m" | tail -1
  "$bin/worker-orcd" score --model "$m" --device cuda --ids "$ids,0" --logits-out "$out/llama-logits.npy" --json >/dev/null || echo "score failed"
  "$bin/worker-orcd" generate --model "$m" --device cuda --prompt-ids "$ids" --temperature 0 -n 16 --ignore-eos --json >"$out/llama-gen.json" || echo "generate failed"
  python3 scripts/torch_reference.py export --gguf "$m" --out /tmp/llama-hf &&
  python3 scripts/torch_reference.py compare --hf /tmp/llama-hf --ids "$ids" --worker-logits "$out/llama-logits.npy" \
    --worker-generate "$out/llama-gen.json" --steps 16; echo "reference llama-tiny: exit $?" ;;
engine)
  # The scheduler tests with the model on the GPU.
  WORKER_TEST_DEVICE=cuda "$bin/engine.test" -test.timeout 300s 2>&1 | tee "$out/engine-tests.log" | grep -E "^(--- FAIL|FAIL|ok|PASS)" ;;
pipeline)
  # mmt_'s staging (MMT_STAGES 1 or 2) and weight prefetch (MMT_PREFETCH 0
  # or 1) side by side: T=64 kernel timings and the 64-stream workload.
  synth qwen2.5-0.5b /tmp/q05.gguf
  synth phi3-mini-4k /tmp/phi3.gguf
  for cfg in ${PIPE_CFGS:-1,0 1,1 2,0 2,1}; do
    st=${cfg%,*} pf=${cfg#*,}
    export WORKER_CUDA_MMT_STAGES=$st WORKER_CUDA_MMT_PREFETCH=$pf
    WORKER_TEST_TIMING=1 "$bin/cuda.test" -test.v -test.run TestDecodeKernelTiming 2>&1 | grep -E "T=(8|64)" | sed 's/.*timing //; s/ GB\/s//g' >"$out/timing-$st$pf.log"
    for m in q05 phi3; do
      "$bin/worker-orcd" bench --model /tmp/$m.gguf --device cuda -p 128 -n 128 --concurrency 64 --json >"$out/pipe-$st$pf-$m.json" 2>"$out/bench.err" ||
        { echo "bench $cfg $m failed"; tail -3 "$out/bench.err"; }
    done
    unset WORKER_CUDA_MMT_STAGES WORKER_CUDA_MMT_PREFETCH
  done
  python3 - "$out" <<'PY'
import glob, json, os, sys
d = sys.argv[1]
for f in sorted(glob.glob(d + "/timing-*.log")):
    for line in open(f):
        w = line.split()
        # stages S prefetch P name… T=… (auto …)  mmu_ X µs G  mmt X µs G …
        i, j = w.index("mmt"), w.index("2tok")
        print("%s %s  mmt %s µs  2tok %s µs" % (os.path.basename(f)[7:9], " ".join(w[4:w.index("(auto")]), w[i + 1], w[j + 1]))
for f in sorted(glob.glob(d + "/pipe-*.json")):
    r = json.load(open(f))
    l = r["concurrency"][-1]
    print("%-16s decode %6.1f  64: %6.0f  all decoding %6.0f  itl p50 %.1f" % (os.path.basename(f)[5:-5], r["decode_tokens_per_s"], l["generated_tokens_per_s"], l.get("all_decoding_tokens_per_s", 0), l.get("itl_p50_ms", 0)))
PY
  ;;
kprofile)
  # Time per kernel and launch shape (WORKER_CUDA_PROFILE=1: events around
  # every launch, graphs off) over a workload: KPROFILE_SHAPE (phi3-mini-4k)
  # with KPROFILE_CONC streams (64).
  shape=${KPROFILE_SHAPE:-phi3-mini-4k} conc=${KPROFILE_CONC:-64}
  synth "$shape" "/tmp/$shape.gguf"
  WORKER_CUDA_PROFILE=1 "$bin/worker-orcd" bench --model "/tmp/$shape.gguf" --device cuda -p 128 -n 64 --concurrency "$conc" >"$out/kprofile-bench.txt" 2>"$out/kprofile-$shape-$conc.txt"
  grep -A40 "kernel profile" "$out/kprofile-$shape-$conc.txt" | cut -c1-150 ;;
reference-window)
  # Phi-3's sliding window against transformers (which applies it): the
  # Phi-3-mini shape, 4 layers, F16, with W = 2047 (what Phi-3-mini-4k files
  # carry) on 2 200 tokens and W = 64 on 256 tokens; as a control, the same
  # logits against transformers without the window.
  for c in "2047 2200" "64 256"; do
    read -r W N <<<"$c"
    ids=$(python3 -c "print(','.join(str((i*7919+13)%30000) for i in range($N)))")
    m=/tmp/phi3-w$W.gguf
    "$bin/synth" --shape phi3-mini-4k --type F16 --layers 4 --sliding-window "$W" --vocab builtin -o "$m" | tail -1
    "$bin/worker-orcd" score --model "$m" --device cuda --ids "$ids,0" --logits-out "$out/w$W-logits.npy" --json >/dev/null || echo "score failed"
    "$bin/worker-orcd" generate --model "$m" --device cuda --prompt-ids "$ids" --temperature 0 -n 8 --ignore-eos --json >"$out/w$W-gen.json" || echo "generate failed"
    python3 scripts/torch_reference.py export --gguf "$m" --out "/tmp/w$W-hf" >/dev/null &&
    python3 scripts/torch_reference.py compare --hf "/tmp/w$W-hf" --ids "$ids" --worker-logits "$out/w$W-logits.npy" \
      --worker-generate "$out/w$W-gen.json" --steps 8 --from "$W"; echo "reference window $W, $N tokens: exit $?"
    python3 scripts/torch_reference.py export --gguf "$m" --out "/tmp/w$W-nowin" --no-window >/dev/null &&
    python3 scripts/torch_reference.py compare --hf "/tmp/w$W-nowin" --ids "$ids" --worker-logits "$out/w$W-logits.npy" \
      --worker-generate "$out/w$W-gen.json" --steps 0 --from "$W" | sed 's/^/  control, transformers without the window: /'
    rm -rf "$m" "/tmp/w$W-hf" "/tmp/w$W-nowin" "$out/w$W-logits.npy"
  done ;;
server)
  # The serving tests with the model on the GPU.
  WORKER_TEST_DEVICE=cuda "$bin/server.test" -test.timeout 300s 2>&1 | tee "$out/server-tests.log" | grep -E "^(--- FAIL|FAIL|ok|PASS)" ;;
table)
  # Issues 11 and 12's tables: prefill of a 512-token prompt and batch-1
  # decode of 128 tokens (`bench -p 512 -n 128`) for both real shapes in
  # Q4_K_M, Q8_0 and F16, with $OLD too when set; then the Phi-3 shape's time
  # to first token for a 4 096-token prompt (a copy whose context_length is
  # 8 192, so that the bench's cached-prefix run fits beside the prompt).
  for shape in qwen2.5-0.5b phi3-mini-4k; do
    for ty in Q4_K_M Q8_0 F16; do
      m=/tmp/t-$shape-$ty.gguf
      "$bin/synth" --shape "$shape" --type "$ty" --vocab builtin -o "$m" >/dev/null || { echo "synth $shape $ty failed"; continue; }
      for b in ${OLD:-} "$bin/worker-orcd"; do
        "$b" bench --model "$m" --device cuda -p 512 -n 128 --json >"$out/table-$(basename "$b")-$shape-$ty.json" 2>"$out/table.err" ||
          { echo "bench $b $m failed"; tail -3 "$out/table.err"; continue; }
        python3 -c 'import json,sys; r=json.load(open(sys.argv[1])); print("%-14s %-7s %-40s pp512 %8.0f  decode %6.1f tok/s" % (sys.argv[2], sys.argv[3], sys.argv[4], r["prefill_tokens_per_s"], r["decode_tokens_per_s"]))' \
          "$out/table-$(basename "$b")-$shape-$ty.json" "$shape" "$ty" "$b"
      done
      rm -f "$m"
    done
  done
  m=/tmp/t-phi3-4096.gguf
  "$bin/synth" --shape phi3-mini-4k --type Q4_K_M --context 8192 --vocab builtin -o "$m" >/dev/null
  for b in ${OLD:-} "$bin/worker-orcd"; do
    "$b" bench --model "$m" --device cuda -p 4096 -n 4 --ctx 4200 2>&1 | grep -E "^prefill|orcd:" | sed "s|^|$b phi3-mini-4k Q4_K_M: |"
  done
  rm -f "$m" ;;
kv64)
  # Issue 15: the Phi-3 shape with 64 concurrent streams of a 4 096-token
  # context (3 968-token prompts, 128 tokens each), F16 KV, under the KV
  # memory budget's default (blocks granted as sequences grow); $OLD too
  # when set, side by side.
  synth phi3-mini-4k /tmp/phi3.gguf
  for b in ${OLD:-} "$bin/worker-orcd"; do
    j="$out/kv64-$(basename "$b").json"
    "$b" bench --model /tmp/phi3.gguf --device cuda --ctx 4096 -p 3968 -n 128 --concurrency 64 --json >"$j" 2>"$out/kv64.err" ||
      { echo "kv64 bench $b failed"; tail -5 "$out/kv64.err"; continue; }
    python3 -c 'import json,sys; r=json.load(open(sys.argv[1])); l=r["concurrency"][-1]; print("kv64 %-16s phi3 prefill %.0f tok/s, first token %.0f ms (%.1f ms with %d tokens cached)  64 streams: %.0f tok/s, ttft p50 %.0f ms p99 %.0f ms, itl p50 %.1f ms" % (sys.argv[2], r["prefill_tokens_per_s"], r.get("ttft_ms", 0), r.get("cached_prefix_ttft_ms", 0), r.get("cached_prefix_tokens", 0), l["generated_tokens_per_s"], l.get("ttft_p50_ms", 0), l.get("ttft_p99_ms", 0), l.get("itl_p50_ms", 0)))' "$j" "$(basename "$b")"
    grep -iE "kv|budget|block" "$out/kv64.err" | tail -3
  done ;;
ab)
  # $OLD against $bin/worker-orcd, alternating twice, on the Qwen and Phi-3
  # shapes in Q4_K_M: pp512 and decode, then a 3 000-token prompt and decode
  # after it (long-context attention), then 64 streams (-p 128 -n 128).
  # AB_SETS (bench arguments, ';' between sets) and AB_REPS change them.
  IFS=';' read -ra sets <<<"${AB_SETS:--p 512 -n 128;-p 3000 -n 128 --ctx 4096;-p 128 -n 128 --concurrency 64}"
  for shape in qwen2.5-0.5b phi3-mini-4k; do
    m=/tmp/ab-$shape.gguf
    "$bin/synth" --shape "$shape" --type Q4_K_M --vocab builtin -o "$m" >/dev/null || { echo "synth $shape failed"; continue; }
    for args in "${sets[@]}"; do
      for rep in $(seq "${AB_REPS:-2}"); do
        for b in ${OLD:-} "$bin/worker-orcd"; do
          "$b" bench --model "$m" --device cuda $args --json 2>/dev/null |
            python3 -c 'import json,sys; r=json.load(sys.stdin); l=r["concurrency"][-1]; print("%-13s %-32s %-18s prefill %8.0f  decode %6.1f  streams %3d: %7.0f tok/s" % (sys.argv[1], sys.argv[2], sys.argv[3], r["prefill_tokens_per_s"], r["decode_tokens_per_s"], l["requests"], l["generated_tokens_per_s"]))' "$shape" "$args" "$(basename "$b")"
        done
      done
    done
    rm -f "$m"
  done ;;
f16w|int8|gemmq|normq8)
  # Presets of envab below, one setting 0 against 1 in one binary:
  #   f16w    WORKER_CUDA_F16_WEIGHTS (resident F16 copies for prompt rows),
  #           both shapes in Q4_K_M: pp512 and decode, a 2 000-token prompt's
  #           first token uncached and cached (issue 15's 10×)
  #   int8    WORKER_CUDA_INT8_DECODE (8-bit decode kernels against mmt_),
  #           both shapes in Q4_K_M and Q8_0: batch-1 decode and 64 streams
  #           (INT8_SETS changes the bench arguments)
  #   gemmq   WORKER_CUDA_GEMMQ (gemmq_ against cuBLAS for prompt rows),
  #           both shapes in Q4_K_M and Q8_0: pp512, the 2 000-token prompt
  #   normq8  WORKER_CUDA_NORM_Q8 (the norm writing a lone decode row's 8-bit
  #           form), both shapes in Q4_K_M and Q8_0: batch-1 decode
  q4="qwen2.5-0.5b Q4_K_M;phi3-mini-4k Q4_K_M"
  q48="qwen2.5-0.5b Q4_K_M;qwen2.5-0.5b Q8_0;phi3-mini-4k Q4_K_M;phi3-mini-4k Q8_0"
  case $step in
  f16w) AB_VAR=WORKER_CUDA_F16_WEIGHTS AB_MODELS=$q4 AB_SETS="-p 512 -n 128;-p 2000 -n 4 --ctx 2100" "$0" envab ;;
  int8) AB_VAR=WORKER_CUDA_INT8_DECODE AB_MODELS=$q48 AB_REPS=1 AB_SETS="${INT8_SETS:--p 512 -n 128;-p 128 -n 128 --concurrency 64}" "$0" envab ;;
  gemmq) AB_VAR=WORKER_CUDA_GEMMQ AB_MODELS=$q48 AB_REPS=1 AB_SETS="-p 512 -n 32;-p 2000 -n 4 --ctx 2100" "$0" envab ;;
  normq8) AB_VAR=WORKER_CUDA_NORM_Q8 AB_MODELS=$q48 AB_SETS="-p 512 -n 128" "$0" envab ;;
  esac ;;
envab)
  # One setting side by side in one binary: AB_VAR (WORKER_CUDA_PDL) at each
  # of AB_VALUES ("0 1"), AB_REPS (2) rounds alternating, on AB_MODELS
  # ("shape type" pairs, ';' between; the six of issue 11's table by
  # default) with each of AB_SETS (bench arguments, ';' between). Each line:
  # prefill and decode tok/s (bench's medians), the first token uncached and
  # cached, and the last concurrency level's generated tok/s.
  var=${AB_VAR:-WORKER_CUDA_PDL}
  IFS=';' read -ra models <<<"${AB_MODELS:-qwen2.5-0.5b Q4_K_M;qwen2.5-0.5b Q8_0;qwen2.5-0.5b F16;phi3-mini-4k Q4_K_M;phi3-mini-4k Q8_0;phi3-mini-4k F16}"
  IFS=';' read -ra sets <<<"${AB_SETS:--p 512 -n 128}"
  for mt in "${models[@]}"; do
    read -r shape ty <<<"$mt"
    m=/tmp/ab-$shape-$ty.gguf
    "$bin/synth" --shape "$shape" --type "$ty" --vocab builtin -o "$m" >/dev/null || { echo "synth $shape $ty failed"; continue; }
    for args in "${sets[@]}"; do
      for rep in $(seq "${AB_REPS:-2}"); do
        for v in ${AB_VALUES:-0 1}; do
          env "$var=$v" "$bin/worker-orcd" bench --model "$m" --device cuda $args --json 2>/dev/null |
            python3 -c 'import json,sys; r=json.load(sys.stdin); l=r["concurrency"][-1]; print("%-13s %-7s %-30s %s=%s  prefill %8.0f  decode %6.1f  first token %6.1f ms, cached %5.1f ms  streams %3d: %7.0f tok/s" % (sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[4], sys.argv[5], r["prefill_tokens_per_s"], r["decode_tokens_per_s"], r.get("ttft_ms", 0), r.get("cached_prefix_ttft_ms", 0), l["requests"], l["generated_tokens_per_s"]))' "$shape" "$ty" "$args" "$var" "$v"
        done
      done
    done
    rm -f "$m"
  done ;;
gemm-tile)
  # Prompt rows per cuBLAS call (WORKER_CUDA_GEMM_TILE 64, 128, 256): prefill
  # of 512 and 2 048 tokens and the first token of a 32-token prompt, Qwen
  # Q4_K_M and Phi-3 Q4_K_M/F16.
  for mt in "qwen2.5-0.5b Q4_K_M" "phi3-mini-4k Q4_K_M" "phi3-mini-4k F16"; do
    read -r shape ty <<<"$mt"
    m=/tmp/g-$shape-$ty.gguf
    "$bin/synth" --shape "$shape" --type "$ty" --vocab builtin -o "$m" >/dev/null
    for tile in 64 128 256; do
      for p in 32 512 2048; do
        WORKER_CUDA_GEMM_TILE=$tile "$bin/worker-orcd" bench --model "$m" --device cuda -p $p -n 2 --ctx 4096 --json 2>/dev/null |
          python3 -c 'import json,sys; r=json.load(sys.stdin); print("%-14s %-7s tile %3s  p %5s  prefill %8.0f tok/s  ttft %7.1f ms" % (sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[4], r["prefill_tokens_per_s"], r.get("ttft_ms", 0)))' "$shape" "$ty" $tile $p
      done
    done
    rm -f "$m"
  done ;;
bench)
  "$bin/synth" --shape qwen2.5-0.5b --type Q4_K_M --vocab builtin -o /tmp/q05.gguf | tail -1
  "$bin/worker-orcd" bench --model /tmp/q05.gguf --device cuda -p 512 -n 128 --concurrency 1,8,32 ;;
bench-phi3)
  "$bin/synth" --shape phi3-mini-4k --type Q4_K_M --vocab builtin -o /tmp/phi3.gguf | tail -1
  "$bin/worker-orcd" bench --model /tmp/phi3.gguf --device cuda -p 512 -n 128 --concurrency 1,8 ;;
esac
done
