//! Starting ring 3: the root task, the first program, which holds the
//! capabilities of `ROOT_CAPABILITIES` (minted by the core) and starts
//! everything else.

use pandagen_abi::syscall::ROOT_CAPABILITIES;
use pandagen_abi::KernelError;

use crate::task::{self, KernelState, TaskEndHook, KERNEL};

/// Why the root task did not start.
#[derive(Debug)]
pub enum RootError {
    /// The ramdisk holds no `bin/<name>`.
    Missing,
    /// The image did not load, or the core refused the task.
    Failed(KernelError),
}

/// Start `bin/<name>` as the root task and schedule for good. `on_end`,
/// if given, runs when the root task ends (the test harness's verdict).
/// Returns only if the root task could not start.
pub fn run(name: &str, on_end: Option<TaskEndHook>) -> RootError {
    let Some(image) = crate::boot_files::image(name) else {
        return RootError::Missing;
    };
    let mut kernel = KernelState::new();
    let now = task::now();
    let started = kernel.start(name, image, name, |core, frames| {
        let root = core.create_root_task(name, now)?;
        core.charge_frames(root.task, frames)?;
        Ok(root)
    });
    let root = match started {
        Ok(root) => root,
        Err(e) => return RootError::Failed(e),
    };
    // The root's capabilities, then the framebuffer's where there is one.
    debug_assert_eq!(
        root.capabilities.len(),
        ROOT_CAPABILITIES.len() + usize::from(crate::early_display::framebuffer_pages().is_some())
    );
    log::info!("root task {} runs bin/{name}", root.task);
    if let Some(budget) = kernel.core().budget(root.task) {
        log::info!(
            "root budget: {} bytes of kernel memory, {} frames ({} used by its image)",
            budget.limit.memory,
            budget.limit.frames,
            budget.used.frames
        );
    }
    if let Some(on_end) = on_end {
        kernel.watch_end(root.task, on_end);
    }
    *KERNEL.lock() = Some(kernel);
    task::run_first()
}
