#!/usr/bin/env bash
# Coverage-guided fuzzing with atheris (libFuzzer for Python) of capture framing and per-packet
# decode: scripts/fuzz.sh [SECONDS]   (default 60 per harness; not part of CI)
#
# Harnesses: tests/fuzz_atheris/fuzz_framing.py (a whole capture file per input) and
# tests/fuzz_atheris/fuzz_decode.py (a link type and one frame per input). Their corpora grow
# in $PCAP_INGEST_FUZZ_WORK (default /tmp/pcap-ingest-fuzz), kept between runs. Every crasher
# (an exception, a broken invariant, a hang past 10 s, memory past 2 GiB) is copied into
# tests/fuzz_cases/ as a capture file, which tests/test_fuzz.py::test_fuzz_case replays on
# every test run: add it to that folder's README (and to KNOWN_BROKEN until it is fixed).
# atheris is installed into the venv when missing; it is not a project dependency.
source "$(dirname "${BASH_SOURCE[0]}")/_venv.sh"
cd "$repo_root"

seconds="${1:-60}"
work="${PCAP_INGEST_FUZZ_WORK:-/tmp/pcap-ingest-fuzz}"
cases="$repo_root/tests/fuzz_cases"
# libFuzzer stops at its first crash; it is restarted (the corpus kept) at most this often.
max_restarts=20

if ! python -c "import atheris" 2>/dev/null; then
    echo "installing atheris into $venv" >&2
    if ! python -m pip install --quiet atheris >&2; then
        echo "fuzz.sh: atheris could not be installed for $(python -V) on $(uname -m)" \
            "(it builds from source where no wheel fits, which needs clang and libFuzzer);" \
            "the regression cases in tests/fuzz_cases/ still run with the tests" >&2
        exit 1
    fi
fi

# Copy the crashers of one harness into tests/fuzz_cases/, in a form test_fuzz_case replays;
# print how many.
keep_crashers() {
    local harness="$1" artifacts="$2" found=0 crasher name
    for crasher in "$artifacts"/crash-* "$artifacts"/timeout-* "$artifacts"/oom-*; do
        [ -f "$crasher" ] || continue
        name="atheris-$harness-$(basename "$crasher").cap"  # its format is found by magic
        if [ "$harness" = decode ]; then  # the input is link type + frame: write it as a pcap
            python tests/fuzz_atheris/fuzz_decode.py --to-pcap "$crasher" "$cases/$name" 2>/dev/null
        else  # the input is the capture itself
            cp "$crasher" "$cases/$name"
        fi
        rm -f "$crasher"
        echo "kept $cases/$name" >&2
        found=$((found + 1))
    done
    echo "$found"
}

status=0
for harness in framing decode; do
    script="tests/fuzz_atheris/fuzz_$harness.py"
    corpus="$work/corpus-$harness"
    artifacts="$work/artifacts-$harness"
    log="$work/$harness.log"
    mkdir -p "$corpus" "$artifacts"
    if [ -z "$(ls -A "$corpus")" ]; then
        python "$script" --seed-corpus "$corpus" 2>/dev/null
    fi
    : > "$log"
    deadline=$((SECONDS + seconds))
    crashes=0
    for _ in $(seq "$max_restarts"); do
        left=$((deadline - SECONDS))
        [ "$left" -gt 0 ] || break
        python "$script" -max_total_time="$left" -timeout=10 -rss_limit_mb=2048 \
            -print_final_stats=1 -artifact_prefix="$artifacts/" "$corpus" >> "$log" 2>&1 || true
        kept=$(keep_crashers "$harness" "$artifacts")
        crashes=$((crashes + kept))
        [ "$kept" -gt 0 ] || break  # ran its time out
    done
    executed=$(grep -o "stat::number_of_executed_units: *[0-9]*" "$log" | awk '{s += $2} END {print s + 0}')
    coverage=$(grep -E "^#[0-9]+" "$log" | tail -1 | grep -o "cov: [0-9]* ft: [0-9]*" || echo "cov: ?")
    corpus_size=$(ls "$corpus" | wc -l)
    echo "$harness: $executed executions in ${seconds} s, $coverage (edges, features)," \
        "corpus $corpus_size inputs, $crashes crashers kept (log: $log)"
    [ "$crashes" -eq 0 ] || status=2
done
exit "$status"
