# bash completion for kvctl: its subcommands, their options, and the names of
# the buckets registryd is running now. Installed as
# share/bash-completion/completions/kvctl, where bash-completion loads it the
# first time kvctl is completed; `source` it to try it by hand.
#
# The subcommands and options are read from kvctl's own --help (CLI11's
# "Subcommands:" and "Options:" sections), so this file never lists them and
# cannot fall behind kvctl. Bucket names come from `kvctl list --json` with the
# same --run-dir as the line being completed (else kvctl's own default), with a
# short timeout, so a stopped registryd cannot hang the shell. Needs nothing
# from the bash-completion package.

# The subcommands kvctl --help lists, one a line.
_kvctl_subcommands()
{
    "$1" --help 2>/dev/null | awk '/^[^ ].*:$/ { section = $0; next } section == "Subcommands:" && /^  [a-z]/ { print $1 }'
}

# The long options `kvctl [SUBCOMMAND] --help` lists, one a line.
_kvctl_options()
{
    "$@" --help 2>/dev/null | awk '/^[^ ].*:$/ { section = $0; next }
        section == "Options:" && /^  -/ { n = split($1, names, ","); for (i = 1; i <= n; i++) if (names[i] ~ /^--/) print names[i] }'
}

# The values `kvctl SUBCOMMAND --help` lists for OPTION, one a line: CLI11
# shows a check's choices beside the option's type, as in
# "--restart POLICY:{temporary,transient,permanent}"; none for an
# option without such a list.
_kvctl_option_values()
{
    "$1" "$2" --help 2>/dev/null | awk -v option="$3" '$1 == option && match($2, /:\{[^}]*\}/) {
        n = split(substr($2, RSTART + 2, RLENGTH - 3), values, ","); for (i = 1; i <= n; i++) print values[i] }'
}

# Whether SUBCOMMAND's first argument is an existing bucket's name: its --help
# has a NAME positional, and it is not create (which takes a new one).
_kvctl_takes_bucket()
{
    [[ $2 != create ]] && grep -q '^  NAME ' <<<"$("$1" "$2" --help 2>/dev/null)"
}

# The names of the running buckets, one a line, as `kvctl list --json` gives
# them (JSON's \" and \\ undone; a name is never anything else that JSON escapes,
# as names hold no control bytes).
_kvctl_bucket_names()
{
    local json pattern='"name": *"((\\.|[^"\\])*)"' name
    json=$("$@" --timeout 2 list --json 2>/dev/null) || return 0
    while [[ $json =~ $pattern ]]; do
        name=${BASH_REMATCH[1]}
        name=${name//\\\"/\"}
        printf '%s\n' "${name//\\\\/\\}"
        json=${json#*"${BASH_REMATCH[0]}"}
    done
}

_kvctl()
{
    local kvctl=$1 cur=${COMP_WORDS[COMP_CWORD]} prev=${COMP_WORDS[COMP_CWORD - 1]}
    local -a run_dir=() candidates=()
    local subcommand="" arguments=0 i word
    COMPREPLY=()

    # What the line holds before the word being completed: the subcommand,
    # how many arguments it has, and a --run-dir to pass on.
    for ((i = 1; i < COMP_CWORD; i++)); do
        word=${COMP_WORDS[i]}
        case $word in
        --run-dir) run_dir=(--run-dir "${COMP_WORDS[i + 1]}"); i=$((i + 1)) ;;
        --run-dir=*) run_dir=("$word") ;;
        --timeout | --restart | --password-file) i=$((i + 1)) ;;
        -*) ;;
        *) if [[ -z $subcommand ]]; then subcommand=$word; else arguments=$((arguments + 1)); fi ;;
        esac
    done

    case $prev in
    --run-dir) mapfile -t COMPREPLY < <(compgen -d -- "$cur"); return 0 ;;
    --password-file) mapfile -t COMPREPLY < <(compgen -f -- "$cur"); return 0 ;;
    --timeout) return 0 ;;
    esac

    # The value of an option whose --help lists its choices (create --restart).
    if [[ -n $subcommand && $prev == --* ]]; then
        mapfile -t candidates < <(_kvctl_option_values "$kvctl" "$subcommand" "$prev")
        if ((${#candidates[@]} > 0)); then
            for word in "${candidates[@]}"; do
                [[ $word == "$cur"* ]] && COMPREPLY+=("$word")
            done
            return 0
        fi
    fi

    if [[ $cur == -* ]]; then
        # kvctl's own options are taken after a subcommand too (CLI11's fallthrough).
        mapfile -t candidates < <({
            _kvctl_options "$kvctl"
            [[ -z $subcommand ]] || _kvctl_options "$kvctl" "$subcommand"
        } | sort -u)
    elif [[ -z $subcommand ]]; then
        mapfile -t candidates < <(_kvctl_subcommands "$kvctl")
    elif ((arguments == 0)) && _kvctl_takes_bucket "$kvctl" "$subcommand"; then
        mapfile -t candidates < <(_kvctl_bucket_names "$kvctl" "${run_dir[@]}")
    fi
    # Each candidate that starts with what is typed, quoted for the command
    # line (a bucket name may hold a space or a quote).
    for word in "${candidates[@]}"; do
        [[ $word == "$cur"* ]] && COMPREPLY+=("$(printf '%q' "$word")")
    done
    return 0
}

complete -F _kvctl kvctl
