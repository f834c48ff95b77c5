# Functions shared by atex's helper commands (W/bin/tmt-report-result, tmt-file-submit,
# tmt-reboot, tmt-abort and the BeakerLib helpers): sourced from W/libexec, never run.
# Every message goes to the test-control channel (fd $ATEX_TEST_CONTROL) as one write
# sequence under an exclusive lock on W/control.lock, so helpers running at the same time
# (concurrent BeakerLib phases, a test's background jobs) never interleave their messages.

export LC_ALL=C
# The work directory W: this file is W/libexec/atex-helpers.sh.
atex_work=${BASH_SOURCE[0]%/libexec/*}
atex_me=${0##*/}

atex_die() {
    printf '%s: %s\n' "$atex_me" "$*" >&2
    exit 2
}

# Fails unless the control channel is there (the command runs under atex).
atex_check_channel() {
    [[ $ATEX_TEST_CONTROL =~ ^[0-9]+$ ]] \
        || atex_die "not running under atex: ATEX_TEST_CONTROL is not set"
}

# Takes the control channel's lock for the rest of this process (and its children).
atex_lock() {
    command -v flock >/dev/null 2>&1 || return 0
    exec {atex_lock_fd}>>"$atex_work/control.lock" 2>/dev/null || return 0
    flock "$atex_lock_fd"
}

# Prints $1 as a JSON string.
atex_json() {
    local s=$1 out='' c i
    s=${s//\\/\\\\}
    s=${s//\"/\\\"}
    s=${s//$'\n'/\\n}
    s=${s//$'\t'/\\t}
    s=${s//$'\r'/\\r}
    if [[ $s == *[[:cntrl:]]* ]]; then
        for (( i = 0; i < ${#s}; i++ )); do
            c=${s:i:1}
            if [[ $c == [[:cntrl:]] ]]; then
                printf -v c '\\u%04x' "'$c"
            fi
            out+=$c
        done
        s=$out
    fi
    printf '"%s"' "$s"
}

# Prints $1 keeping only the characters [a-zA-Z0-9 _.,:-+=%@/].
atex_sanitize() {
    local drop='[^a-zA-Z0-9 _.,:+=%@/-]'
    printf '%s' "${1//$drop/}"
}

# Sends the result JSON $1 (a complete object).
atex_send_result() {
    printf 'result %d\n%s' "${#1}" "$1" >&"$ATEX_TEST_CONTROL"
}

# Sends a result whose JSON is $1 without its closing brace, with the file $3 uploaded as
# $2. The file is copied first: what is sent is exactly what its length announces, even
# when the file changes meanwhile.
atex_send_file() {
    local head=$1 name=$2 path=$3 snap size json rc
    snap=$(mktemp "$atex_work/.upload.XXXXXXXX") || return 1
    if ! cat -- "$path" >"$snap"; then
        rm -f -- "$snap"
        return 1
    fi
    size=$(stat -c %s -- "$snap") || { rm -f -- "$snap"; return 1; }
    json="$head, \"files\": [{\"name\": $(atex_json "$name"), \"length\": $size}]}"
    { printf 'result %d\n%s' "${#json}" "$json" && cat -- "$snap"; } >&"$ATEX_TEST_CONTROL"
    rc=$?
    rm -f -- "$snap"
    return $rc
}

# Sends the file $1 as a partial nameless result: it ends up in the test's own result.
atex_submit_file() {
    local path=$1 name
    name=$(atex_sanitize "${path##*/}")
    [[ -n $name ]] || name=file
    atex_send_file '{"partial": true' "$name" "$path"
}
