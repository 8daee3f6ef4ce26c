#!/usr/bin/env bash
# Runs on the GPU machine (no Go there): the GPU test binary, the
# transformers reference for real-shape models, and the benchmark, from
# binaries built here into devbin1/ (see docs/perf.md for how).
#   scripts/gpu-check.sh tests|sanitizer|server|reference|bench|bench-phi3 ...
set -uo pipefail
bin=${BIN:-devbin1}
export WORKER_KERNEL_CACHE=${WORKER_KERNEL_CACHE:-/tmp/worker-kernels}
out=${OUT:-/tmp/out}
mkdir -p "$out"
for step in "$@"; do
case $step in
tests)
  "$bin/cuda.test" -test.v -test.timeout 400s 2>&1 | tee "$out/cuda-tests.log" | grep -E "^(--- |FAIL|ok|PASS)|worst|VRAM" ;;
sanitizer)
  san=/usr/local/cuda/bin/compute-sanitizer
  if [ -x "$san" ]; then
    "$san" --tool memcheck --error-exitcode 9 "$bin/cuda.test" -test.run 'Parity$|AttentionParity' 2>&1 | tail -5
    echo "compute-sanitizer memcheck exit status: $?"
  else echo "compute-sanitizer not found"; fi ;;
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
server)
  # The serving tests with the model on the GPU.
  WORKER_TEST_DEVICE=cuda "$bin/server.test" -test.timeout 300s 2>&1 | tee "$out/server-tests.log" | grep -E "^(--- FAIL|FAIL|ok|PASS)" ;;
bench)
  "$bin/synth" --shape qwen2.5-0.5b --type Q4_K_M --vocab builtin -o /tmp/q05.gguf | tail -1
  "$bin/worker-orcd" bench --model /tmp/q05.gguf --device cuda -p 512 -n 128 --concurrency 1,8,32 ;;
bench-phi3)
  "$bin/synth" --shape phi3-mini-4k --type Q4_K_M --vocab builtin -o /tmp/phi3.gguf | tail -1
  "$bin/worker-orcd" bench --model /tmp/phi3.gguf --device cuda -p 512 -n 128 --concurrency 1,8 ;;
esac
done
