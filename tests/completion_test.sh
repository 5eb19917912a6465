#!/usr/bin/env bash
# kvctl's bash completion (kvctl/completion.bash), sourced in bash as
# bash-completion would, and run as bash runs it on TAB: COMP_WORDS and
# COMP_CWORD set, _kvctl called, COMPREPLY read. Checks the subcommands, the
# options, and the names of the buckets a real registryd runs.
#   completion_test.sh COMPLETION_SCRIPT BIN_DIR
source "$(dirname "${BASH_SOURCE[0]}")/shell_fixture.sh"
completion=$1
bin=$2
export PATH="$bin:$PATH"
unset KV_RUN_DIR
source "$completion"

# complete LINE: what TAB at the end of LINE offers, in $offered (one a line, sorted).
complete_line()
{
    local line=$1
    read -r -a COMP_WORDS <<<"$line"
    [[ $line == *" " ]] && COMP_WORDS+=("")
    COMP_CWORD=$((${#COMP_WORDS[@]} - 1))
    COMP_LINE=$line
    COMP_POINT=${#line}
    COMPREPLY=()
    _kvctl kvctl "${COMP_WORDS[COMP_CWORD]}" "${COMP_WORDS[COMP_CWORD - 1]}"
    offered=$(printf '%s\n' "${COMPREPLY[@]}" | sed '/^$/d' | sort)
}

expect()
{
    local line=$1 wanted
    wanted=$(printf '%s\n' "${@:2}" | sed '/^$/d' | sort)
    complete_line "$line"
    [[ $offered == "$wanted" ]] || kv_fail "'$line<TAB>' offered [$(echo $offered)], not [$(echo $wanted)]"
    echo "ok: '$line<TAB>' offers [$(echo $offered)]"
}

# Contains: every word given is offered (other subcommands may come).
expect_among()
{
    local line=$1 word
    complete_line "$line"
    for word in "${@:2}"; do
        grep -qx -- "$word" <<<"$offered" || kv_fail "'$line<TAB>' offered [$(echo $offered)], without $word"
    done
    echo "ok: '$line<TAB>' offers [$(echo $offered)]"
}

# The subcommands: the README's, each one kvctl really has.
expect_among "kvctl " create lookup list stop monitor put get keys delete
for subcommand in $offered; do
    kvctl "$subcommand" --help >/dev/null || kv_fail "completion offered '$subcommand', which kvctl does not know"
done
expect "kvctl cr" create
expect "kvctl --timeout 3 l" list lookup
expect_among "kvctl --" --run-dir --timeout --password-file --help
# --password-file takes a file, and its value is no subcommand.
touch "$kv_scratch/password"
expect "kvctl --password-file $kv_scratch/passw" "$kv_scratch/password"
expect "kvctl --password-file $kv_scratch/password l" list lookup
expect_among "kvctl list --" --json --help
expect_among "kvctl create --" --restart --help
# An option's values, as its --help lists them.
expect "kvctl create --restart " permanent temporary transient
expect "kvctl create shopping --restart t" temporary transient
expect "kvctl --timeout 3 create --restart p" permanent
complete_line "kvctl get --"
grep -qx -- --json <<<"$offered" && kv_fail "'kvctl get --<TAB>' offered list's --json"

# No registryd: nothing to offer, and no hang (kvctl's own timeout).
run="$kv_scratch/run"
expect "kvctl --run-dir $run get "

# Live bucket names, from the registryd on the line's --run-dir, or on KV_RUN_DIR.
kv_start_registryd "$bin/registryd" "$run"
for name in shopping school "two words"; do
    kvctl --run-dir "$run" create "$name" >/dev/null
done
expect "kvctl --run-dir $run get " shopping school 'two\ words'
expect "kvctl --run-dir $run stop s" shopping school
expect "kvctl --run-dir $run put sh" shopping
expect "kvctl get --run-dir $run tw" 'two\ words'
KV_RUN_DIR=$run expect "kvctl lookup " shopping school 'two\ words'
# Not where a bucket name goes: after the name, and create's new name.
expect "kvctl --run-dir $run get shopping "
expect "kvctl --run-dir $run create "
# A bucket that stopped is no longer offered.
kvctl --run-dir "$run" stop school
expect "kvctl --run-dir $run monitor s" shopping
kv_stop_registryd
echo "all completion cases passed"
