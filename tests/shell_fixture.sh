# What the shell-script tests (install, man pages, completion, package) share;
# each sources this file. The shell's own daemon_fixture.h and require.h:
#   kv_require_programs NAME...   a missing program fails the test under
#                                 CI=true, else skips it (exit 77, which ctest
#                                 reports as skipped: SKIP_RETURN_CODE)
#   $kv_scratch                   a temporary directory of the test's own,
#                                 removed on exit with whatever registryd it ran
#   kv_start_registryd / kv_stop_registryd
set -euo pipefail

kv_fail()
{
    echo "FAIL: $*" >&2
    exit 1
}

kv_require_programs()
{
    local name
    for name in "$@"; do
        command -v "$name" >/dev/null && continue
        if [[ ${CI:-} == true ]]; then
            echo "CI=true and a prerequisite is missing: needs $name" >&2
            exit 1
        fi
        echo "skipped: needs $name" >&2
        exit 77
    done
}

kv_scratch=$(mktemp -d "${TMPDIR:-/tmp}/kvsh-XXXXXX")
kv_registryd_pid=""

kv_cleanup()
{
    if [[ -n $kv_registryd_pid ]]; then
        kill -KILL "$kv_registryd_pid" 2>/dev/null || true
        wait "$kv_registryd_pid" 2>/dev/null || true
    fi
    rm -rf "$kv_scratch"
}
trap kv_cleanup EXIT

# kv_start_registryd REGISTRYD RUN_DIR [OPTION...]: runs REGISTRYD in the
# background on RUN_DIR, its log in $kv_scratch/registryd.log, and returns once
# its socket listens: registryd writes a newline to --notify-fd then, and the
# read below ends at that line, or at end of file if registryd exits first.
kv_start_registryd()
{
    local registryd=$1 run_dir=$2 line
    shift 2
    local ready="$kv_scratch/ready"
    rm -f "$ready"
    mkfifo "$ready"
    "$registryd" --run-dir "$run_dir" --notify-fd 3 "$@" 3>"$ready" 2>>"$kv_scratch/registryd.log" &
    kv_registryd_pid=$!
    if ! read -r line <"$ready"; then
        cat "$kv_scratch/registryd.log" >&2
        kv_fail "$registryd did not start"
    fi
    rm -f "$ready"
}

# kv_stop_registryd: SIGTERM, then its exit status must be 0 (a clean stop).
kv_stop_registryd()
{
    local status=0
    kill -TERM "$kv_registryd_pid"
    wait "$kv_registryd_pid" || status=$?
    kv_registryd_pid=""
    if ((status != 0)); then
        cat "$kv_scratch/registryd.log" >&2
        kv_fail "registryd exited $status on SIGTERM, not 0"
    fi
}
