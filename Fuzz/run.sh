#!/usr/bin/env bash
# Builds one libFuzzer harness and runs it.
#   Fuzz/run.sh TARGET [RUNS] [extra libFuzzer flags...]
#   Fuzz/run.sh FuzzDOE 1000000
# TARGET is an executable product of Fuzz/Package.swift (FuzzDOE, FuzzSPDMDecoders, FuzzResponder,
# FuzzPCISIGProtocols, FuzzVIOMMUCommands, FuzzEvidence, FuzzGuestEnumeration, FuzzPcap, FuzzGuestLink, FuzzSPDMSocket). RUNS
# defaults to 1000000; -1 means run until stopped.
# The corpus grows in Fuzz/corpus/TARGET (git-ignored), seeded from Fuzz/Seeds/TARGET when present.
# A crashing input is written to Fuzz/crash-<sha1> and the script exits non-zero.
set -euo pipefail

if [[ $# -lt 1 ]]; then
  echo "usage: $0 TARGET [RUNS] [libFuzzer flags...]" >&2
  exit 2
fi
target=$1
runs=${2:-1000000}
shift $(( $# >= 2 ? 2 : 1 ))

fuzz_dir=$(cd "$(dirname "$0")" && pwd)

# -sanitize=fuzzer adds coverage instrumentation to every module, the root package's included, and
# links libFuzzer; the harness's main hands control to LLVMFuzzerRunDriver (see Sources/CLibFuzzer).
# (gold warns once per ASan helper symbol; those lines are filtered, the exit status is kept.)
if ! swift build -c debug --package-path "$fuzz_dir" \
  -Xswiftc -sanitize=fuzzer,address \
  --product "$target" > >(grep -v 'ld.gold: warning: Cannot export local symbol') 2>&1; then
  echo "build of $target failed" >&2
  exit 1
fi
bin="$fuzz_dir/.build/debug/$target"

corpus="$fuzz_dir/corpus/$target"
mkdir -p "$corpus"
seeds=()
[[ -d "$fuzz_dir/Seeds/$target" ]] && seeds=("$fuzz_dir/Seeds/$target")

# Swift's own crash backtracer reads the crashed thread's stack from a helper thread, which ASan
# reports as a stack-buffer-overflow in CrashHandlerLinux.cpp after every Swift trap, burying the real
# failure; without it libFuzzer prints the symbolized stack of the trap itself.
export SWIFT_BACKTRACE=${SWIFT_BACKTRACE:-enable=no}

exec "$bin" -runs="$runs" -artifact_prefix="$fuzz_dir/" -print_final_stats=1 "$@" "$corpus" "${seeds[@]}"
