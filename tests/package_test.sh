#!/usr/bin/env bash
# The Debian package, end to end: CPack builds the .deb from the build tree,
# lintian finds no error in it, its control fields are right (Depends from
# dpkg-shlibdeps), `dpkg -x` unpacks it into a scratch root where every file
# is where README "Install" says and the programs are stripped, and the
# walkthrough runs from that root: its registryd starts the bucketd of
# root/usr/libexec/kv, found from its own directory, and kvctl works.
#   package_test.sh BUILD_DIR WITH_MAN_PAGES(ON|OFF)
source "$(dirname "${BASH_SOURCE[0]}")/shell_fixture.sh"
kv_require_programs cpack lintian dpkg-deb dpkg-shlibdeps readelf
build=$1
with_man=$2

# The package, made in the scratch dir (-B), never in the build tree.
if ! cpack --config "$build/CPackConfig.cmake" -G DEB -B "$kv_scratch/package" >"$kv_scratch/cpack.log" 2>&1; then
    cat "$kv_scratch/cpack.log" >&2
    kv_fail "cpack could not build the .deb"
fi
debs=("$kv_scratch"/package/kv_*.deb)
((${#debs[@]} == 1)) && [[ -f ${debs[0]} ]] || kv_fail "cpack made no kv_*.deb: $(ls "$kv_scratch/package")"
deb=${debs[0]}
echo "ok: built $(basename "$deb")"

# lintian: no error (E:); warnings are printed for whoever reads the log.
lintian --tag-display-limit 0 "$deb" >"$kv_scratch/lintian.log" 2>&1 || true
cat "$kv_scratch/lintian.log"
if grep -q '^E:' "$kv_scratch/lintian.log"; then
    kv_fail "lintian reports errors on $(basename "$deb")"
fi
echo "ok: lintian finds no error"

# The control fields.
field() { dpkg-deb --field "$deb" "$1"; }
[[ $(field Package) == kv ]] || kv_fail "Package is $(field Package)"
[[ $(field Section) == database ]] || kv_fail "Section is $(field Section)"
[[ -n $(field Maintainer) ]] || kv_fail "no Maintainer"
[[ $(field Description) == *registryd* ]] || kv_fail "Description says nothing of registryd"
echo "ok: control fields: Package kv, Section database, Maintainer $(field Maintainer)"

# Unpacked: what goes where.
root="$kv_scratch/root"
dpkg -x "$deb" "$root"
for program in usr/bin/registryd usr/bin/kvctl usr/libexec/kv/bucketd; do
    [[ -x $root/$program ]] || kv_fail "$program is missing from the package"
    sections=$(readelf -S "$root/$program")
    grep -qE '\.symtab|\.debug_info' <<<"$sections" && kv_fail "$program is not stripped"
done
[[ -e $root/usr/bin/bucketd ]] && kv_fail "bucketd is in usr/bin: it is internal, libexec/kv only"
files=(usr/share/doc/kv/copyright usr/share/doc/kv/changelog.gz usr/share/bash-completion/completions/kvctl)
if [[ $with_man == ON ]]; then
    files+=(usr/share/man/man8/registryd.8.gz usr/share/man/man8/bucketd.8.gz usr/share/man/man1/kvctl.1.gz)
fi
for file in "${files[@]}"; do
    [[ -f $root/$file ]] || kv_fail "$file is missing from the package"
done
grep -q "^License: Expat" "$root/usr/share/doc/kv/copyright" || kv_fail "the copyright file names no licence"
echo "ok: files in place, programs stripped"

# Depends names the package of every shared library the programs load
# (found as the loader finds it, then asked of dpkg; /lib and /usr/lib are one
# directory on Debian 12, and dpkg knows each file by one of the two names).
depends=$(field Depends)
depended_on=$(sed 's/ *([^)]*)//g; s/ *[,|] */\n/g' <<<"$depends") # package names, one a line
libraries=$(readelf -d "$root/usr/bin/registryd" "$root/usr/bin/kvctl" "$root/usr/libexec/kv/bucketd" \
    | sed -n 's/.*(NEEDED).*\[\(.*\)\]/\1/p' | sort -u)
[[ -n $libraries ]] || kv_fail "the programs load no shared library: readelf found nothing to check"
ldconfig -p >"$kv_scratch/ldconfig"
for library in $libraries; do
    path=$(awk -v library="$library" '$1 == library && /x86-64|64bit/ { print $NF; exit }' "$kv_scratch/ldconfig")
    [[ -n $path ]] || path=$(awk -v library="$library" '$1 == library { print $NF; exit }' "$kv_scratch/ldconfig")
    owner=$(dpkg -S "$path" 2>/dev/null || dpkg -S "/usr${path#/usr}" 2>/dev/null || dpkg -S "${path#/usr}" 2>/dev/null) \
        || kv_fail "no package owns $library ($path)"
    package=${owner%%:*}
    grep -qxF "$package" <<<"$depended_on" || kv_fail "Depends ($depends) lacks $package, which ships $library"
done
echo "ok: Depends: $depends (every library the programs load: $(echo $libraries))"

# The walkthrough, from the unpacked root only.
kvctl() { "$root/usr/bin/kvctl" --run-dir "$run" "$@"; }
run="$kv_scratch/run"
grep -qF "$root/usr/libexec/kv/bucketd" <<<"$("$root/usr/bin/registryd" --help)" \
    || kv_fail "registryd --help does not show $root/usr/libexec/kv/bucketd as --bucketd's default"
kv_start_registryd "$root/usr/bin/registryd" "$run"
pid=$(kvctl create shopping)
exe=$(readlink "/proc/$pid/exe")
[[ $exe == "$root/usr/libexec/kv/bucketd" ]] || kv_fail "the bucket runs $exe, not $root/usr/libexec/kv/bucketd"
kvctl put shopping milk 1
[[ $(kvctl get shopping milk) == 1 ]] || kv_fail "get shopping milk did not print 1"
[[ $(kvctl lookup shopping) == "$pid" ]] || kv_fail "lookup shopping did not print $pid"
kvctl stop shopping
status=0
kvctl lookup shopping 2>/dev/null || status=$?
((status == 1)) || kv_fail "lookup after stop exited $status, not 1 (not found)"
kv_stop_registryd
echo "ok: the walkthrough ran from the package (bucketd $exe)"
