//! `cargo xtask run --gdb`: a gdb script that attaches with the kernel's
//! symbols where the kernel really runs, and stops in a ring-3 service.
//!
//! The kernel is a position-independent ELF linked at 0. The bootloader
//! places it at the start of the range the kernel reserves for it
//! (`BOOTLOADER_RANGE_START` in kernel/src/layout.rs) and logs that as
//! `virtual_address_offset` on serial, so its symbols must be loaded with
//! that offset: `symbol-file -o OFFSET KERNEL`.
//!
//! Ring-3 programs are static executables linked at [`USER_IMAGE_BASE`]
//! (userspace/rt/link.ld), and the kernel's loader maps each segment at its
//! link address, so their symbols need no offset (`add-symbol-file ELF`).
//! But every service shares that range, each in its own address space, and
//! QEMU stops at a breakpoint's address in whichever task runs it: a plain
//! `break console::main` also stops the process manager when it executes
//! its own code at that address. The script therefore defines
//! `pandagen-break SERVICE LOCATION`, which adds the service's symbols and
//! sets a breakpoint that stops only when the code at `$pc` in the stopped
//! task is that service's ELF's code there (16 bytes compared), i.e. the
//! task runs that image.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use crate::fail;
use crate::layout::{KernelKind, Layout, Profile};
use crate::process::TaskResult;

/// Where the bootloader places the kernel image (the
/// `virtual_address_offset` of its serial log).
pub const KERNEL_LOAD_OFFSET: u64 = 0xffff_8000_0000_0000;
/// Where `userspace/rt/link.ld` places every ring-3 program.
pub const USER_IMAGE_BASE: u64 = 0x40_0000;
/// The port of QEMU's gdb stub (`qemu/gdb.args`: `-s`).
pub const GDB_PORT: u16 = 1234;

/// The gdb helpers for ring-3 services (see the module docs). gdb runs the
/// Python between `python` and `end`; `SERVICES` is filled in by
/// [`script`].
const SERVICE_HELPERS: &str = r#"python
import struct

def _pandagen_code(path, address, count):
    """`count` bytes of the ELF at `path` as loaded at `address`, or None."""
    with open(path, "rb") as elf:
        data = elf.read()
    phoff, = struct.unpack_from("<Q", data, 0x20)
    phentsize, phnum = struct.unpack_from("<HH", data, 0x36)
    for i in range(phnum):
        kind, _, offset, vaddr, _, filesz = struct.unpack_from(
            "<IIQQQQ", data, phoff + i * phentsize)
        if kind == 1 and vaddr <= address and address + count <= vaddr + filesz:
            start = offset + address - vaddr
            return data[start:start + count]
    return None

def _pandagen_runs(service):
    """Whether the stopped task runs `service`'s image: its code at $pc is
    the ELF's."""
    pc = int(gdb.parse_and_eval("$pc"))
    expected = _pandagen_code(SERVICES[service], pc, 16)
    try:
        actual = bytes(gdb.selected_inferior().read_memory(pc, 16))
    except gdb.MemoryError:
        return False
    return expected is not None and expected == actual

class PandagenServiceBreakpoint(gdb.Breakpoint):
    """A breakpoint that stops only in a task running `service`."""
    def __init__(self, location, service):
        super().__init__(location)
        self.service = service

    def stop(self):
        return _pandagen_runs(self.service)

class PandagenBreak(gdb.Command):
    """pandagen-break SERVICE LOCATION: add SERVICE's symbols and stop at
    LOCATION only in a task that runs SERVICE."""
    def __init__(self):
        super().__init__("pandagen-break", gdb.COMMAND_BREAKPOINTS)

    def invoke(self, arg, from_tty):
        service, location = arg.split(None, 1)
        if service not in SERVICES:
            raise gdb.GdbError("no service %s; one of: %s" % (service, ", ".join(SERVICES)))
        gdb.execute("add-symbol-file %s" % SERVICES[service])
        PandagenServiceBreakpoint(location, service)

PandagenBreak()
end
"#;

/// The gdb commands that load the kernel's symbols at its load address,
/// define the service helpers for `services` (name and ELF) and attach.
pub fn script(kernel: &Path, services: &[(String, PathBuf)]) -> String {
    let mut text = format!(
        "# Written by `cargo xtask run --gdb`: gdb -x {{this file}}\n\
         set pagination off\n\
         set confirm off\n\
         symbol-file -o {KERNEL_LOAD_OFFSET:#x} {kernel}\n\
         python SERVICES = {{}}\n",
        kernel = kernel.display()
    );
    for (name, elf) in services {
        let _ = writeln!(
            text,
            "python SERVICES[{name:?}] = {:?}",
            elf.display().to_string()
        );
    }
    text.push_str(SERVICE_HELPERS);
    let _ = writeln!(text, "target remote localhost:{GDB_PORT}");
    text
}

/// The ring-3 programs of the system and their unstripped ELFs.
fn service_elfs(layout: &Layout, profile: Profile, programs: &[String]) -> Vec<(String, PathBuf)> {
    programs
        .iter()
        .map(|p| (p.clone(), layout.user_elf(p, profile)))
        .collect()
}

/// Writes [`script`] to `target/gdb/pandagen.gdb` and returns its path.
pub fn write_script(layout: &Layout, profile: Profile, programs: &[String]) -> TaskResult<PathBuf> {
    let dir = layout.target().join("gdb");
    std::fs::create_dir_all(&dir).map_err(|e| fail!("{}: {e}", dir.display()))?;
    let path = dir.join("pandagen.gdb");
    let services = service_elfs(layout, profile, programs);
    std::fs::write(&path, script(&layout.kernel_elf(profile, KernelKind::System), &services))
        .map_err(|e| fail!("{}: {e}", path.display()))?;
    Ok(path)
}

/// What `run --gdb` prints: how to attach, and how to debug each service
/// in `programs` (ring-3 program names).
pub fn instructions(
    layout: &Layout,
    profile: Profile,
    script: &Path,
    programs: &[String],
) -> String {
    let mut text = format!(
        "QEMU is waiting for a debugger on tcp::{GDB_PORT}. In another terminal:\n\
         \n    gdb -x {script}\n\n\
         It loads the kernel's symbols at the address the bootloader runs it at\n\
         ({KERNEL_LOAD_OFFSET:#x}; serial logs it as `virtual_address_offset`), as\n\
         `symbol-file -o {KERNEL_LOAD_OFFSET:#x} {kernel}`,\n\
         and attaches to localhost:{GDB_PORT}. Then, in gdb:\n\
         \n    tbreak _start                         (the kernel's entry)\n    continue\n\n\
         A ring-3 service is a static ELF loaded at its link address ({USER_IMAGE_BASE:#x}, no\n\
         offset). Every service is linked there, each in its own address space, so\n\
         stop in one with the script's command, which adds the service's symbols and\n\
         stops only in a task running that service:\n\
         \n    pandagen-break console console::main\n    continue\n\n\
         Service ELFs ({profile} build):\n",
        script = script.display(),
        kernel = layout.kernel_elf(profile, KernelKind::System).display(),
        profile = profile.dir(),
    );
    for (program, elf) in service_elfs(layout, profile, programs) {
        let _ = writeln!(text, "    {program:<20} {}", elf.display());
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_script_loads_the_kernel_at_the_bootloaders_offset_before_attaching() {
        let services = [("console".to_string(), PathBuf::from("/u/console"))];
        let text = script(Path::new("/k/pandagen-kernel"), &services);
        assert!(text.contains("python SERVICES[\"console\"] = \"/u/console\""));
        assert!(text.contains("class PandagenBreak"));
        let symbols = text
            .find("symbol-file -o 0xffff800000000000 /k/pandagen-kernel")
            .expect("kernel symbols at the load offset");
        let attach = text.find("target remote localhost:1234").expect("attach");
        assert!(symbols < attach);
    }

    #[test]
    fn the_offset_is_the_start_of_the_range_the_kernel_gives_the_bootloader() {
        let layout_rs = std::fs::read_to_string(
            Path::new(env!("CARGO_MANIFEST_DIR")).join("../kernel/src/layout.rs"),
        )
        .unwrap();
        assert!(layout_rs.contains("BOOTLOADER_RANGE_START: u64 = 0xFFFF_8000_0000_0000;"));
        let link_ld = std::fs::read_to_string(
            Path::new(env!("CARGO_MANIFEST_DIR")).join("../userspace/rt/link.ld"),
        )
        .unwrap();
        assert!(link_ld.contains(&format!(". = {USER_IMAGE_BASE:#x};")));
    }
}
