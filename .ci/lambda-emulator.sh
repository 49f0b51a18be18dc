#!/usr/bin/env bash
# The real imgtag-lambda binary under cargo-lambda's local Lambda runtime
# emulator (`cargo lambda watch --only-lambda-apis` + `cargo lambda invoke`),
# offline: an S3 event for an
# image on an in-process S3 server on loopback, the local detector, and a
# check that the metadata JSON appeared with the expected labels.
# Needs cargo-lambda on PATH (.ci/run installs it from PyPI).
set -euo pipefail
cd "$(dirname "$0")/.."
# The binaries the test build made (CARGO_TARGET_DIR is honoured).
bin="${CARGO_TARGET_DIR:-target}/debug"

start=$(date +%s)
work=$(mktemp -d)
pids=()
cleanup() {
    # Only the processes this script started, by id.
    for pid in "${pids[@]}"; do
        kill "$pid" 2>/dev/null || true
        wait "$pid" 2>/dev/null || true
    done
    [ -n "${KEEP_WORK:-}" ] || rm -rf "$work"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

fail() {
    echo "lambda-emulator: FAILED: $*" >&2
    for f in "$work"/*.log; do
        [ -f "$f" ] || continue
        echo "---- $f (last 40 lines)" >&2
        tail -n 40 "$f" >&2
    done
    exit 1
}

# Ports: the emulator's invoke port, chosen free by the kernel.
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')

# Everything here comes from the test build (`cargo test --all-features`
# in .ci/test): building imgtag-lambda on its own would resolve features
# without the dev-dependencies and compile the whole AWS SDK a second time.
echo "== build (s3mem_server, imgtag, imgtag-lambda; fresh after the tests)"
cargo build --locked --quiet --all-features --example s3mem_server --bin imgtag --bin imgtag-lambda
echo "== S3 server on loopback with uploads/chelsea the cat.png"
"$bin/examples/s3mem_server" emulator \
    "uploads/chelsea the cat.png=assets/samples/chelsea.png" >"$work/s3.out" 2>"$work/s3.log" &
pids+=($!)
for _ in $(seq 50); do
    [ -s "$work/s3.out" ] && break
    sleep 0.1
done
endpoint=$(head -n1 "$work/s3.out")
[ -n "$endpoint" ] || fail "the S3 server did not start"
echo "   $endpoint"

# The tests' key pair (tests/common/s3mem.rs).
creds=(
    AWS_ACCESS_KEY_ID=AKIAIMGTAGTEST
    AWS_SECRET_ACCESS_KEY=imgtag-test-secret-key
    AWS_REGION=us-east-1
)
envs=(
    "${creds[@]}"
    AWS_EC2_METADATA_DISABLED=true
    AWS_ENDPOINT_URL_S3="$endpoint"
    IMGTAG_PATH_STYLE=true
    IMGTAG_DETECTOR=local
    IMGTAG_BUCKETS=emulator
    IMGTAG_MIN_CONFIDENCE=50
    RUST_LOG=info
)
echo "== cargo lambda watch --only-lambda-apis (port $port) and $bin/imgtag-lambda"
cargo lambda watch --only-lambda-apis --invoke-address 127.0.0.1 --invoke-port "$port" \
    >"$work/emulator.log" 2>&1 &
pids+=($!)
for _ in $(seq 100); do
    if (echo >"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then break; fi
    sleep 0.2
done
(echo >"/dev/tcp/127.0.0.1/$port") 2>/dev/null || fail "the emulator did not listen on $port"
# The variables the emulator says a function needs, as Lambda sets them.
env "${envs[@]}" AWS_LAMBDA_FUNCTION_VERSION=1 AWS_LAMBDA_FUNCTION_MEMORY_SIZE=4096 \
    AWS_LAMBDA_FUNCTION_NAME=_ AWS_LAMBDA_RUNTIME_API="http://127.0.0.1:$port/.rt" \
    "$bin/imgtag-lambda" >"$work/watch.log" 2>&1 &
pids+=($!)

echo "== cargo lambda invoke (S3 event, key uploads/chelsea+the+cat.png)"
# Bounded: a function that dies at cold start leaves the invoke waiting.
if ! timeout 120 cargo lambda invoke _ --invoke-address 127.0.0.1 --invoke-port "$port" \
    --data-file tests/fixtures/events/s3-put-emulator.json >"$work/reply.json" 2>"$work/invoke.log"; then
    fail "invoke failed"
fi
cat "$work/reply.json"; echo
grep -q '"outcome":"tagged"' "$work/reply.json" || fail "the reply does not say tagged"

echo "== the metadata JSON, read back with imgtag show"
env "${creds[@]}" AWS_EC2_METADATA_DISABLED=true HOME="$work" \
    "$bin/imgtag" show --bucket emulator --endpoint-url "$endpoint" --path-style \
    --json "uploads/chelsea the cat.png" >"$work/show.json" 2>"$work/show.log" \
    || fail "imgtag show failed"
python3 - "$work/show.json" <<'EOF' || fail "unexpected metadata"
import json, sys
shown = json.load(open(sys.argv[1]))
assert shown["status"] in ("tagged", "needs-review"), shown
assert shown["metadata_key"] == "metadata/chelsea the cat.png.json", shown
meta = shown["metadata"]
assert meta["ImgTag"]["TaggedBy"] == "imgtag-lambda", meta
assert meta["ImgTag"]["Detector"] == "local", meta
assert meta["ImgTag"]["MinConfidence"] == 50.0, meta
assert meta["ImgTag"]["Source"]["Key"] == "uploads/chelsea the cat.png", meta
names = [l["Name"] for l in meta["Labels"]]
assert "Cat" in names, names
print("   labels:", ", ".join(names))
EOF
grep -q '"key":"uploads/chelsea the cat.png"' "$work/watch.log" \
    || fail "no structured JSON log line with the decoded key"
# Sequential mode: the runtime exported this invocation's trace id, which
# the SDK forwards for Lambda's recursive-loop detection.
grep -q '"trace_id_env":"Root=1-' "$work/watch.log" \
    || fail "_X_AMZN_TRACE_ID was not set for the invocation"
sleep 0.3  # the server reports trace ids every 100 ms
trace=$(grep -o '"trace_id_env":"Root=1-[0-9a-f-]*' "$work/watch.log" | head -n1 | cut -d'"' -f4)
grep -qF "x-amzn-trace-id: $trace" "$work/s3.log" \
    || fail "the S3 requests did not carry the invocation's trace id ($trace)"

echo "== lambda emulator check passed in $(( $(date +%s) - start ))s"
