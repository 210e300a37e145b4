//! Running child processes with a readable error when they fail.

use std::fmt;
use std::process::Command;

/// Why a task failed. xtask prints this and exits non-zero.
#[derive(Debug)]
pub struct TaskError(pub String);

impl fmt::Display for TaskError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for TaskError {}

impl From<std::io::Error> for TaskError {
    fn from(e: std::io::Error) -> Self {
        TaskError(e.to_string())
    }
}

pub type TaskResult<T> = Result<T, TaskError>;

/// Shorthand for building a `TaskError` with `format!` syntax.
#[macro_export]
macro_rules! fail {
    ($($arg:tt)*) => { $crate::process::TaskError(format!($($arg)*)) };
}

/// Renders a command the way a user would type it, for messages.
pub fn display(cmd: &Command) -> String {
    let mut s = cmd.get_program().to_string_lossy().into_owned();
    for arg in cmd.get_args() {
        s.push(' ');
        s.push_str(&arg.to_string_lossy());
    }
    s
}

/// Runs `cmd` with inherited stdio and fails unless it exits successfully.
pub fn run_checked(cmd: &mut Command) -> TaskResult<()> {
    let status = cmd
        .status()
        .map_err(|e| fail!("cannot start `{}`: {e}", display(cmd)))?;
    if status.success() {
        Ok(())
    } else {
        Err(fail!("`{}` failed ({status})", display(cmd)))
    }
}

/// Runs `cmd` quietly and returns its stdout, or `None` if it could not run
/// or failed. Used for probes such as `rustup target list`.
pub fn probe(cmd: &mut Command) -> Option<String> {
    let out = cmd.output().ok()?;
    out.status
        .success()
        .then(|| String::from_utf8_lossy(&out.stdout).into_owned())
}

/// A `cargo` command through the rustup proxy (not `$CARGO`), so an explicit
/// `+toolchain` works. Without one, rustup's inherited `RUSTUP_TOOLCHAIN`
/// keeps nested builds on the toolchain that started xtask.
pub fn cargo() -> Command {
    Command::new("cargo")
}
