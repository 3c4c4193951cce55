#!/usr/bin/env bash
# One device session in one command (BENCHMARKS.md "GPU", bench/README.md "A GPU session"):
#   make device-wheels                                   # here, once: .whl/ (git-ignored)
#   run(command="bash bench/gpu_session.sh", carry=[".whl"], timeout_s=540)
# Steps: facts (GPU, driver, libnvcuvid for NVDEC, cores, versions) -> install the carried wheels -> the CUDA
# tests -> corpus and random ViT-L/14 -> the NVDEC probe (bench.nvdec_probe: PyNvVideoCodec against the CPU
# sampler, frame-exactness and throughput) -> bench.decode_processes for quality 360p, keyframes 1 fps and
# quality 1080p: threads, 15 decode processes, nvdec (7 NVDEC sessions through the real operator,
# bench/nvdec_operator.py) and nvdec+15 (both on one queue) -> a summary table. Each step is time-boxed, all of them end within
# 8.5 min, and a failing one is logged and skipped, so the later ones still run. Everything goes to
# $OUT/gpu_session.log; nvidia-smi samples GPU and NVDEC use every 200 ms into $OUT/nvidia-smi.csv; the
# results are $OUT/h200-quality.json, $OUT/h200-quality-1080p.json, $OUT/h200-keyframes.json and
# $OUT/h200-nvdec.json (6 files).
# GPU_SESSION_SMOKE=1 (make device-dry-run): the same steps on the CPU with ViT-B/32 and tiny sizes; the nvdec
# modes are rows "not measured" with the import's error there.
# Exit status: the number of failed steps (0: all ran).
set -u
ROOT=$(cd "$(dirname "$0")/.." && pwd)
cd "$ROOT" || exit 1
OUT=${OUT:-$ROOT/build/gpu-session}
mkdir -p "$OUT"
PY=${GPU_SESSION_PYTHON:-python3}
SITE=${GPU_SESSION_SITE:-/tmp/gpu-session-site}  # the carried wheels, installed beside the image's packages
PREFIX=${GPU_SESSION_PREFIX:-h200}
export PYTHONUNBUFFERED=1 HF_HUB_OFFLINE=1
export PYTHONPATH="$SITE:$ROOT${PYTHONPATH:+:$PYTHONPATH}"  # the project travels as source, never pip-installed
exec > >(tee -a "$OUT/gpu_session.log") 2>&1
TEE_PID=$!

# A figure is >= 30 s or >= 500 videos of steady-state work, whichever comes first (the issue's bar), in
# interleaved slices; a details() call takes a batch of videos (several per decode process, so that a call's ramp
# and drain stay small), and a slice ends after the call that passes its time or its videos, so 1080p takes
# fewer, larger slices.
if [ "${GPU_SESSION_SMOKE:-0}" = 1 ]; then
    # ViT-B/32 with random weights: the real-architecture path (bench/random_models.py) at a CPU's speed
    MODEL=b32 DEVICE=cpu FIGURE_S=2 PROCS=1 LIMIT_SCALE=3  # 2 shared cores, not 16
    FIGURE="--nvdec 2 --nvdec-processes 1"  # recorded as not measured: no NVDEC here
    C360="--corpus-videos 2 --corpus-seconds 2" C1080="--corpus-videos 2 --corpus-seconds 1"
    B360="--batch 4 --segments 1" B1080="--batch 4 --segments 1"
    # NVDEC is not there: the probe records why, after its CPU side (indices, sample_frames), and passes
    NVDEC="--corpus 640x360:2:2,1920x1080:2:1 --exact-videos 1 --seconds 1 --budget-s 20"
else
    # 15 decode processes of 16 cores (what auto picks with a GPU; 8 no longer fits the budget beside NVDEC);
    # NVDEC: 7 sessions (an H200's NVDEC engines) alone, and in front of 15 decode processes
    MODEL=${GPU_SESSION_MODEL:-l14} DEVICE=cuda FIGURE_S=30 PROCS=${GPU_SESSION_PROCESSES:-15} LIMIT_SCALE=1
    FIGURE="--min-videos 500 --nvdec ${GPU_SESSION_NVDEC:-7} --nvdec-processes ${GPU_SESSION_NVDEC_PROCESSES:-15}"
    C360="--corpus-videos 12 --corpus-seconds 20" C1080="--corpus-videos 8 --corpus-seconds 10"
    B360="--batch 64 --segments 3" B1080="--batch 32 --segments 2"
    # the same corpora; 1.5 s per figure x 5 thread counts x 2 plans x 2 sizes, no new work after 50 s
    NVDEC="--corpus 640x360:12:20,1920x1080:8:10 --exact-videos 2 --seconds 1.5 --budget-s 50 --require-nvdec"
fi
# Every step ends by BUDGET_S after the start (the summary gets 10 s more): <= 8.5 min in all. Steps are in
# order of importance, so a slow one shortens the last (1080p), and a step that ends early leaves its time.
# Expected (bench/README.md "A GPU session"): ~150 s up to the probe, then ~90 s quality, ~95 s keyframes,
# ~115 s quality 1080p (4 figures each of <= 30 s, fewer for the fast modes' 500 videos, + ~35 s start-up): ~450.
BUDGET_S=$((${GPU_SESSION_BUDGET_S:-495} * LIMIT_SCALE))

# a shorter second call can run some steps only, e.g. GPU_SESSION_STEPS="install quality summary"
STEPS=${GPU_SESSION_STEPS:-facts install cuda-tests prepare nvdec-probe quality keyframes quality-1080p summary}
T0=$(date +%s)
FAILED=0
SUMMARY=()
step() {  # step NAME LIMIT_S COMMAND...: time-boxed (timeout kills the command's whole process group)
    local name=$1 limit=$(($2 * LIMIT_SCALE)) t rc left
    shift 2
    case " $STEPS " in *" $name "*) ;; *) return 0 ;; esac
    left=$((T0 + BUDGET_S - $(date +%s)))
    if [ "$name" != summary ] && [ "$left" -lt "$limit" ]; then limit=$left; fi
    if [ "$limit" -lt 5 ]; then
        FAILED=$((FAILED + 1))
        echo "=== $name: step failed, skipped: no time left"
        SUMMARY+=("$(printf '%-16s skipped (no time left)' "$name")")
        return 0
    fi
    echo "=== $(date -u '+%F %T') $name (limit ${limit} s): $*"
    t=$(date +%s)
    timeout -k 5 "$limit" "$@"
    rc=$?
    t=$(($(date +%s) - t))
    if [ "$rc" = 0 ]; then
        echo "=== $name: ok in $t s"
    else
        FAILED=$((FAILED + 1))
        echo "=== $name: step failed, rc=$rc in $t s$([ "$rc" = 124 ] && echo ' (timed out)')"
    fi
    SUMMARY+=("$(printf '%-16s rc=%-3s %4s s' "$name" "$rc" "$t")")
    return 0
}

facts() {
    nvidia-smi -L || echo "no nvidia-smi"
    nvidia-smi --query-gpu=name,driver_version,memory.total,clocks.max.sm,power.limit --format=csv || true
    echo "nproc: $(nproc)"
    grep MemTotal /proc/meminfo || true
    echo "ldconfig libnvcuvid:"
    ldconfig -p | grep -i -E 'nvcuvid|nvidia-encode' || echo "  (none)"
    ls -l /usr/local/nvidia/lib64/libnvcuvid* /usr/lib/x86_64-linux-gnu/libnvcuvid* 2>/dev/null || true
    echo "ffmpeg: $(command -v ffmpeg || echo none)"
    "$PY" - <<'EOF' || true
import ctypes, importlib.metadata as md, sys
print("python", sys.version.split()[0], sys.executable)
for lib in ("libnvcuvid.so.1", "libnvidia-encode.so.1"):  # NVDEC (issue 18, item 2) needs the first
    try:
        h = ctypes.CDLL(lib)
    except OSError as e:
        print(lib, "does not load:", e)
        continue
    print(lib, "loads", "(cuvidCreateDecoder found)" if hasattr(h, "cuvidCreateDecoder") else "")
for n in ("torch", "torchvision", "numpy", "pillow", "pyarrow", "timm", "huggingface-hub", "safetensors", "regex",
          "tqdm", "fsspec", "psutil", "pytest", "pytest-timeout", "torchcodec", "PyNvVideoCodec"):
    try:
        print(f"  {n} {md.version(n)}")
    except md.PackageNotFoundError:
        print(f"  {n} not installed")
import torch
print("torch", torch.__version__, "cuda", torch.version.cuda, "available", torch.cuda.is_available())
if torch.cuda.is_available():
    print(torch.cuda.get_device_name(0), "capability", torch.cuda.get_device_capability(0))
EOF
}

install_wheels() {
    rm -rf "$SITE"
    ls .whl/*.whl >/dev/null || { echo "no .whl/: run make device-wheels, and carry [\".whl\"]"; return 1; }
    local w core=() pip=("$PY" -m pip install -q --disable-pip-version-check --no-index --no-deps --no-compile
                         --no-cache-dir --target "$SITE")
    for w in .whl/*.whl; do case $w in .whl/pynvvideocodec-*) ;; *) core+=("$w") ;; esac; done
    "${pip[@]}" "${core[@]}" || return 1
    # NVDEC's wheel alone (cp312 only: a dry run on another Python cannot take it); without it the nvdec-probe
    # step records "No module named 'PyNvVideoCodec'", and nothing else needs it
    if "${pip[@]}" .whl/pynvvideocodec-*.whl; then echo "PyNvVideoCodec installed"; else
        echo "PyNvVideoCodec not installed"; fi
    "$PY" -c "import av, open_clip, video_assets.operators, bench.decode_processes
print('av', av.__version__, 'open_clip', open_clip.__version__, 'from', av.__file__)"
}

prepare() {  # both corpora (encoded in parallel processes) and the random-weight model, side by side, outside
    # the timed steps (a bench step encodes what is still missing itself)
    "$PY" -m bench.decode_processes --prepare --size 640x360 $C360 --model "$MODEL" &
    local first=$!
    "$PY" -m bench.decode_processes --prepare --size 1920x1080 $C1080 || return 1
    wait "$first"
}

bench() {  # bench NAME OPERATOR SIZE CORPUS_ARGS BATCH_ARGS: one result file, threads, processes, nvdec, nvdec+P
    step "$1" 150 "$PY" -m bench.decode_processes --operators "$2" --size "$3" $4 $5 --model "$MODEL" \
        --device "$DEVICE" --processes "$PROCS" --seconds "$FIGURE_S" $FIGURE --json "$OUT/$PREFIX-$1.json"
}

SMI_PID=
if command -v nvidia-smi >/dev/null; then
    nvidia-smi --query-gpu=timestamp,utilization.gpu,utilization.decoder,memory.used,power.draw --format=csv \
        -lms 200 >"$OUT/nvidia-smi.csv" 2>&1 &
    SMI_PID=$!
fi

export -f facts install_wheels prepare
export PY SITE MODEL C360 C1080
step facts 15 bash -c facts
step install 30 bash -c install_wheels
step cuda-tests 40 "$PY" -m pytest -q -p no:cacheprovider -rs --timeout 30 -k "cuda or gpu or different_device" \
    video_assets_tests/models/test_models.py video_assets_tests/operators/test_quality.py \
    video_assets_tests/compute/test_gpu_busy.py video_assets_tests/test_nvdec_operator.py
step prepare 60 bash -c prepare
step nvdec-probe 60 "$PY" -m bench.nvdec_probe $NVDEC --json "$OUT/$PREFIX-nvdec.json"
bench quality quality 640x360 "$C360" "$B360"
bench keyframes keyframes 640x360 "$C360" "$B360"
bench quality-1080p quality 1920x1080 "$C1080" "$B1080"

[ -n "$SMI_PID" ] && kill "$SMI_PID" 2>/dev/null
step summary 10 "$PY" -m bench.decode_processes --summary "$OUT/$PREFIX-quality.json" \
    "$OUT/$PREFIX-keyframes.json" "$OUT/$PREFIX-quality-1080p.json"
echo "=== steps (total $(($(date +%s) - T0)) s, $FAILED failed):"
printf '  %s\n' "${SUMMARY[@]}"
exec >&- 2>&-
wait "$TEE_PID"  # the log's last lines are written before the device tool ends what is left running
exit "$FAILED"
