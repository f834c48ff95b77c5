#!/bin/bash
# atex test wrapper (bash + coreutils only; no Python needed on the system under test).
#
# Usage: wrapper.sh TEST CWD [pty] [noexitcode] [nokill] [pidns]
#
#   TEST        the test executable (started with no arguments)
#   CWD         directory to run it in; if chdir fails the wrapper exits 2
#   pty         run the test on a pseudo-terminal (24x80, TERM=vt100) using util-linux
#               `script -qefc`; without `script` the test runs without a terminal and a
#               warning goes to the wrapper's log
#   noexitcode  do not send `exitcode RC` on the control channel
#   nokill      do not kill processes the test left behind in its process group
#   pidns       run the test as PID 1 of its own PID namespace where possible (see below)
#
# Channels: the wrapper's original stdout is the test-control channel. It is duplicated to
# a high file descriptor exported as ATEX_TEST_CONTROL, and fd 1 is pointed at fd 2, so
# everything the test prints (stdout and stderr) is test output and only deliberate writes
# to $ATEX_TEST_CONTROL reach the controller. The test output holds exactly what the test
# printed: the wrapper's own messages (and bash's job notices) go to the file named by
# ATEX_WRAPPER_LOG (truncated), or nowhere when it is unset.
#
# Process handling: the test runs as a job of this shell with job control enabled
# (`set -m`), i.e. in its own process group. If ATEX_TEST_PGID_FILE is set, that group id
# is written there, so the controller can kill the whole group even if the wrapper is gone;
# the wrapper empties the file once the group is gone (an empty file names no group).
# SIGTERM, SIGHUP and SIGINT are forwarded to the test's group as SIGHUP (with pty, `script`
# also gets SIGTERM, which hangs up the terminal session of the test); the wrapper then
# gives the test one second, SIGKILLs its group, reaps it and exits 128+signal. After the
# test exits, the rest of its group is killed (unless nokill). The exit status of the test (128+signal when killed by a signal;
# 126/127 when it cannot be executed) is sent as `exitcode RC`, and the wrapper exits 0,
# so a non-zero wrapper exit always means trouble outside the test (2: chdir failed,
# 3: the control channel could not be written, 4: bad usage).

# The control channel: original stdout on a new high fd; fd 1 becomes the test output; the
# wrapper's own stderr goes to its log.
exec {control_fd}>&1 || exit 3
exec 1>&2
wrapper_log=${ATEX_WRAPPER_LOG:-/dev/null}
: 2>/dev/null >"$wrapper_log" || wrapper_log=/dev/null
exec 2>"$wrapper_log"

test_exe=$1
test_cwd=$2
if [[ $# -lt 2 || -z $test_exe ]]; then
    echo "atex wrapper: usage: $0 TEST CWD [pty] [noexitcode] [nokill] [pidns]" >&2
    exit 4
fi
shift 2
use_pty=0 send_exitcode=1 kill_leftovers=1 want_pidns=0
for flag in "$@"; do
    case $flag in
        pty) use_pty=1 ;;
        pidns) want_pidns=1 ;;
        noexitcode) send_exitcode=0 ;;
        nokill) kill_leftovers=0 ;;
        *) echo "atex wrapper: unknown flag '$flag'" >&2; exit 4 ;;
    esac
done

cd -- "$test_cwd" 2>/dev/null || {
    echo "atex wrapper: cannot change directory to '$test_cwd'" >&2
    exit 2
}
export ATEX_TEST_CONTROL=$control_fd

test_pid=
test_pgid=

forward_signal() {
    local sig=$1 num=$2
    # A signal right after the job was forked may come before test_pid was assigned.
    test_pid=${test_pid:-$!}
    test_pgid=${test_pgid:-$test_pid}
    if [[ -n $test_pgid ]]; then
        kill -HUP -- "-$test_pgid" 2>/dev/null
        # `script` ignores SIGHUP; SIGTERM makes it stop its child and close the terminal,
        # which hangs up the test's session.
        (( use_pty )) && kill -TERM "$test_pid" 2>/dev/null
        # Give the test one second to go, then kill its whole group.
        local i
        for i in 1 2 3 4 5 6 7 8 9 10; do
            kill -0 "$test_pid" 2>/dev/null || break
            sleep 0.1
        done
        kill -KILL -- "-$test_pgid" 2>/dev/null
        wait "$test_pid" 2>/dev/null
        [[ -n $ATEX_TEST_PGID_FILE ]] && : 2>/dev/null >"$ATEX_TEST_PGID_FILE"
    fi
    trap - "$sig"
    exit $((128 + num))
}
trap 'forward_signal TERM 15' TERM
trap 'forward_signal HUP 1' HUP
trap 'forward_signal INT 2' INT

if (( use_pty )) && ! command -v script >/dev/null 2>&1; then
    echo "atex wrapper: 'script' (util-linux) not found, running the test without a terminal" >&2
    use_pty=0
fi

# Containment of daemons (flag `pidns`): a process that calls setsid leaves the test's
# process group, so killing the group misses it. Where the work directory was set up with a
# `pidns` marker (root, and util-linux `unshare` works), the test then runs as PID 1 of a
# PID namespace of its own: when the test exits, the kernel kills every process left in the
# namespace, setsid daemons included. Elsewhere (non-root, no unshare, pty) only the
# process group is killed.
use_pidns=0
if (( want_pidns && ! use_pty )); then
    if [[ -e ${BASH_SOURCE[0]%/*}/pidns ]]; then
        use_pidns=1
    else
        echo "atex wrapper: no PID namespace here (needs root and unshare); daemons that call setsid are not contained" >&2
    fi
fi

# Job control: the background job below gets a process group of its own. Its stderr is the
# test output (fd 1), not the wrapper's.
# The job records its own group id (its pid: it leads the group) before the test starts,
# so the file exists even when the test kills this wrapper first thing.
record_pgid() {
    [[ -n $ATEX_TEST_PGID_FILE ]] && printf '%s\n' "$BASHPID" >"$ATEX_TEST_PGID_FILE" 2>/dev/null
    return 0
}
set -m
if (( use_pty )); then
    printf -v quoted_exe '%q' "$test_exe"
    { record_pgid; TERM=vt100 exec script -qefc "stty rows 24 cols 80 2>/dev/null; exec $quoted_exe" /dev/null 2>&1; } &
elif (( use_pidns )); then
    { record_pgid; exec unshare --pid --fork --kill-child -- "$test_exe" 2>&1; } &
else
    { record_pgid; exec "$test_exe" 2>&1; } &
fi
test_pid=$!
test_pgid=$test_pid
set +m

# `wait` returns early (status > 128) when a trapped signal arrives; the trap then exits.
rc=0
while :; do
    wait "$test_pid" 2>/dev/null
    rc=$?
    # 127 from wait means "no such job": the test was already reaped.
    kill -0 "$test_pid" 2>/dev/null || break
done

if (( kill_leftovers )); then
    kill -KILL -- "-$test_pgid" 2>/dev/null
fi
# Emptied, not removed: a builtin instead of an `rm` process per test, and no inode freed
# and allocated again for every test.
[[ -n $ATEX_TEST_PGID_FILE ]] && : 2>/dev/null >"$ATEX_TEST_PGID_FILE"

if (( send_exitcode )); then
    printf 'exitcode %d\n' "$rc" >&"$control_fd" 2>/dev/null || exit 3
fi
exit 0
