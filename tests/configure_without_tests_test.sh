#!/usr/bin/env bash
# -DBUILD_TESTING=OFF configures without the test suite's dependencies:
# GoogleTest and pkg-config (hiredis) are made unfindable here
# (CMAKE_DISABLE_FIND_PACKAGE_*), and the configure must still succeed and
# define the programs; the same with BUILD_TESTING on must fail, which shows
# the packages really were out of reach.
#   configure_without_tests_test.sh SOURCE_DIR
source "$(dirname "${BASH_SOURCE[0]}")/shell_fixture.sh"
source_dir=$1
unreachable=(-DCMAKE_DISABLE_FIND_PACKAGE_GTest=ON -DCMAKE_DISABLE_FIND_PACKAGE_PkgConfig=ON)

build="$kv_scratch/without-tests"
cmake -S "$source_dir" -B "$build" -DBUILD_TESTING=OFF "${unreachable[@]}" >"$kv_scratch/log" 2>&1 \
    || { cat "$kv_scratch/log" >&2; kv_fail "-DBUILD_TESTING=OFF does not configure without GoogleTest and hiredis"; }
targets=$(cmake --build "$build" --target help)
for target in registryd bucketd kvctl man; do
    grep -qw "$target" <<<"$targets" || kv_fail "-DBUILD_TESTING=OFF has no target $target"
done
grep -qw registry_integration_test <<<"$targets" && kv_fail "-DBUILD_TESTING=OFF still defines the tests"
echo "ok: -DBUILD_TESTING=OFF configures the programs and the man pages without GoogleTest or hiredis"

if cmake -S "$source_dir" -B "$kv_scratch/with-tests" -DBUILD_TESTING=ON "${unreachable[@]}" >"$kv_scratch/log" 2>&1; then
    kv_fail "with GoogleTest out of reach, -DBUILD_TESTING=ON configured anyway: the check above proves nothing"
fi
grep -q GTest "$kv_scratch/log" || { cat "$kv_scratch/log" >&2; kv_fail "-DBUILD_TESTING=ON failed, but not for GoogleTest"; }
echo "ok: -DBUILD_TESTING=ON needs GoogleTest"
