//! Port windows: the port capabilities a task opened to its own `in` and
//! `out` instructions (`OpenPorts`), enforced by the TSS I/O permission
//! bitmap.
//!
//! The bitmap shows the windows of the task in ring 3 and no other's. At
//! each switch to a task, and after each system call of a task that has
//! windows, the kernel checks every window's capability again
//! ([`KernelCore::port_window`](pandagen_core::KernelCore::port_window):
//! still in the task's space, still with `READ` and `WRITE`) and closes the
//! window of one that is gone, then brings the bitmap to the task's
//! windows. A task's capabilities change only through its own calls (while
//! it runs) or while it does not run (then the switch to it checks), so
//! its ports close before it next runs in ring 3. Tasks without windows
//! pay a comparison or two per switch and per call.

use heapless::Vec;
use pandagen_abi::device::{DeviceError, PortRange, MAX_PORT_WINDOWS};
use pandagen_abi::{CapHandle, KernelError, TaskId};

use super::KernelState;
use crate::arch::x86_64::gdt;

/// A task's open windows: the capability and the ports it opened.
pub type PortWindows = Vec<(CapHandle, PortRange), MAX_PORT_WINDOWS>;

/// The ranges open in the bitmap now.
pub type OpenPorts = Vec<PortRange, MAX_PORT_WINDOWS>;

impl KernelState {
    /// Open the ports of `caller`'s capability `handle` (an `IoPorts`
    /// capability with `READ` and `WRITE`) to its `in` and `out`
    /// instructions, from now until it no longer holds the capability.
    /// Errors: the capability's refusal (audited); `Device(KernelPort)`;
    /// `Device(TooManyPortWindows)`.
    pub fn open_ports(
        &mut self,
        caller: TaskId,
        handle: CapHandle,
        now: pandagen_abi::Instant,
    ) -> Result<PortRange, KernelError> {
        let range = self.core.port_range(caller, handle, now)?;
        let task = self
            .tasks
            .get_mut(&caller)
            .ok_or(KernelError::TaskNotFound(caller))?;
        if !task.ports.iter().any(|&(h, _)| h == handle) {
            task.ports
                .push((handle, range))
                .map_err(|_| KernelError::Device(DeviceError::TooManyPortWindows))?;
        }
        self.sync_ports(caller);
        Ok(range)
    }

    /// Close `task`'s windows whose capability is gone, then make the
    /// bitmap show its windows (and only them). Kept out of line: the
    /// callers' paths for tasks without windows stay as short as before.
    #[inline(never)]
    pub fn sync_ports(&mut self, task: TaskId) {
        let KernelState {
            core,
            tasks,
            open_ports,
            ..
        } = self;
        let empty = PortWindows::new();
        let windows = match tasks.get_mut(&task) {
            Some(t) => {
                t.ports
                    .retain(|(handle, _)| core.port_window(task, *handle).is_some());
                &t.ports
            }
            None => &empty,
        };
        if open_ports.len() == windows.len()
            && open_ports.iter().zip(windows).all(|(o, (_, w))| o == w)
        {
            return;
        }
        for range in open_ports.iter() {
            gdt::set_port_access(*range, false);
        }
        open_ports.clear();
        for &(_, range) in windows {
            gdt::set_port_access(range, true);
            let _ = open_ports.push(range);
        }
    }

    /// Whether the bitmap opens any port now: those of the running task's
    /// windows, so its calls may close some. One comparison, so that the
    /// calls of tasks without windows pay nothing more.
    #[inline]
    pub fn ports_open(&self) -> bool {
        !self.open_ports.is_empty()
    }
}
