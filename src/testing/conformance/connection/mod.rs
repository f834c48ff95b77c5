//! Checks of the [`Connection`](crate::connection::Connection) contract: argv, environment, working directory, stdin,
//! exit status and signals, output modes, large outputs, leftover processes,
//! cancellation of whole process trees, tree transfers and reconnection.
//!
//! The checks run POSIX shell commands (`sh`, `printf`, `cat`, `dd`, `sleep`, `kill`, `tr`)
//! and read `/proc` to see processes, so the system must be a Linux with those tools.

mod exec;
mod output;
mod processes;
mod target;
mod transfer;

/// One mebibyte, for the sizes of the transfer and output checks.
const MIB: usize = 1 << 20;

pub use exec::{argv, cwd, env, exit_status, reconnect, stdin};
pub use output::{concurrent_commands, large_output, output_modes};
pub use processes::{cancellation, leftover_processes, process_group_supervision};
pub use target::ConnectionTarget;
pub use transfer::{transfer_errors, transfer_file, transfer_tree};

use super::Report;

/// Runs every check of this module.
pub async fn all(target: &ConnectionTarget) -> Report {
    let mut report = Report::new(format!("connection {}", target.conn.describe()));
    let d = target.deadline;
    report.run("connection::argv", d, argv(target)).await;
    report.run("connection::env", d, env(target)).await;
    report.run("connection::cwd", d, cwd(target)).await;
    report.run("connection::stdin", d, stdin(target)).await;
    report
        .run("connection::exit_status", d, exit_status(target))
        .await;
    report
        .run("connection::output_modes", d, output_modes(target))
        .await;
    report
        .run("connection::large_output", d, large_output(target))
        .await;
    report
        .run(
            "connection::concurrent_commands",
            d,
            concurrent_commands(target),
        )
        .await;
    report
        .run(
            "connection::leftover_processes",
            d,
            leftover_processes(target),
        )
        .await;
    report
        .run(
            "connection::process_group_supervision",
            d,
            process_group_supervision(target),
        )
        .await;
    report
        .run("connection::cancellation", d, cancellation(target))
        .await;
    report
        .run("connection::transfer_tree", d, transfer_tree(target))
        .await;
    report
        .run("connection::transfer_file", d, transfer_file(target))
        .await;
    report
        .run("connection::transfer_errors", d, transfer_errors(target))
        .await;
    report
        .run("connection::reconnect", d, reconnect(target))
        .await;
    report
}
