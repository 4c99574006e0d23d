#!/usr/bin/env bash
# Runs every cargo-fuzz target for a bounded time (default 60 s each), seeded from fuzz/corpus.
# Usage: scripts/fuzz.sh [seconds-per-target] [target ...]
# Needs cargo-fuzz (`cargo install cargo-fuzz`). On a stable toolchain the sanitizer flags are
# enabled with RUSTC_BOOTSTRAP=1. A crash leaves its input in fuzz/artifacts/<target>/: copy it
# into fuzz/corpus/<target>/ so tests/fuzz_corpus.rs keeps it as a regression test.
set -euo pipefail
cd "$(dirname "$0")/../fuzz"
secs="${1:-60}"
shift || true
targets=("$@")
[ ${#targets[@]} -gt 0 ] || targets=(framer startup inspect auth)
if ! rustc --version | grep -q nightly; then export RUSTC_BOOTSTRAP=1; fi
for t in "${targets[@]}"; do
  mkdir -p "corpus/$t" "target/corpus/$t"
  echo "== fuzzing $t for ${secs}s"
  cargo fuzz run "$t" "target/corpus/$t" "corpus/$t" -- -max_total_time="$secs" -rss_limit_mb=2048 -max_len=65536
done
