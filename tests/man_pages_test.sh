#!/usr/bin/env bash
# The man pages built from man/*.scd: `man -l` renders each one without a
# warning, with the sections a reader looks for, and each page names every
# option its program's --help lists (and kvctl(1) every subcommand), so a new
# option without a line in its page fails here.
#   man_pages_test.sh MAN_DIR BIN_DIR
source "$(dirname "${BASH_SOURCE[0]}")/shell_fixture.sh"
kv_require_programs man
man_dir=$1
bin=$2

# render PAGE: the page as man shows it, one paragraph a line (a width no
# paragraph reaches, so no word is hyphenated across lines); fails on any
# warning from man or groff.
render()
{
    local warnings="$kv_scratch/warnings"
    MANWIDTH=1000 MAN_KEEP_FORMATTING= man --warnings -l "$1" 2>"$warnings" | col -b
    [[ ! -s $warnings ]] || kv_fail "man -l $1 warns: $(cat "$warnings")"
}

for page in registryd.8 bucketd.8 textd.8 kvctl.1; do
    for file in "$man_dir/$page" "$man_dir/$page.gz"; do
        [[ -f $file ]] || kv_fail "$file was not built"
    done
    text=$(render "$man_dir/$page")
    [[ $text == "$(render "$man_dir/$page.gz")" ]] || kv_fail "$page.gz is not $page"
    for section in NAME SYNOPSIS DESCRIPTION "EXIT STATUS" "SEE ALSO"; do
        grep -qx "$section" <<<"$text" || kv_fail "$page has no $section section"
    done
    program=${page%.*}
    if [[ $program != bucketd && $program != textd ]]; then
        # Every long option of --help (and of each subcommand's --help).
        helps=$("$bin/$program" --help)
        if [[ $program == kvctl ]]; then
            subcommands=$(awk '/^[^ ].*:$/ { section = $0; next } section == "Subcommands:" && /^  [a-z]/ { print $1 }' <<<"$helps")
            [[ -n $subcommands ]] || kv_fail "no subcommand found in kvctl --help"
            for subcommand in $subcommands; do
                grep -qE "^ +$subcommand( |$)" <<<"$text" || kv_fail "kvctl(1) does not describe the subcommand $subcommand"
                helps+=$'\n'$("$bin/kvctl" "$subcommand" --help)
            done
        fi
        options=$(grep -oE -- '--[a-z][a-z-]+' <<<"$helps" | sort -u)
        for option in $options; do
            grep -qE -- "(^|[^a-z-])$option([^a-z-]|$)" <<<"$text" || kv_fail "$page does not mention $option (in $program --help)"
        done
        echo "ok: $page describes $(echo $options)"
    fi
    echo "ok: $page renders"
done
grep -q "SIGHUP" <<<"$(render "$man_dir/registryd.8")" || kv_fail "registryd(8) does not say what SIGHUP does"
echo "all man pages passed"
