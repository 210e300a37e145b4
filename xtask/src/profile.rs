//! `cargo xtask profile NAME`: where the instructions of a QEMU benchmark
//! go, per function, across the kernel and the ring-3 programs.
//!
//! The benchmark's image runs under TCG with `-icount shift=0` (as in
//! `cargo xtask bench`) and `-d in_asm,exec,nochain`: QEMU logs every
//! translation block when it translates it (its address, its instructions
//! and their bytes) and, with chaining off, every execution of a block.
//! Each executed block's instructions are given to the function that holds
//! its first instruction (so inlined code counts with its caller):
//! - kernel addresses to the kernel ELF's symbols;
//! - ring-3 addresses to the program whose ELF holds the block's bytes at
//!   that address (every program is linked at the same base, so the
//!   address alone does not say which one ran).
//!
//! The benchmarks time their loops with `rdtsc`, so the run is cut into
//! windows at every ring-3 block that executes `rdtsc`. Windows opened by
//! the same block belong to the same loop: each such group is one
//! measured loop (or the code between two loops), reported apart. With
//! `--per N` (the loop's iterations per window), a group's figures are per
//! iteration, and the group is named after the `[BENCH]` figure closest to
//! its cost per iteration.
//!
//! Counts are close to, not exactly, the benchmark's: `-icount` may end a
//! block early at an I/O instruction, and a block retranslated at the same
//! address is matched to its executions by address.

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Read};
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};

use crate::bench;
use crate::build;
use crate::fail;
use crate::layout::{KernelKind, Layout, Profile};
use crate::process::TaskResult;
use crate::qemu;
use crate::serial;
use crate::setup::{self, Needs};

/// What the user asked for.
pub struct Options {
    /// The QEMU benchmark (`bench`, `bench-storage`).
    pub name: String,
    /// Iterations of the measured loop per window.
    pub per: Option<u64>,
    /// Functions listed per group.
    pub top: usize,
    /// Stop QEMU once this `[BENCH]` figure has been printed.
    pub until: Option<String>,
    /// Give each instruction to the innermost function inlined there (from
    /// the ELFs' debug information, through `addr2line`), not the block to
    /// the symbol holding it.
    pub inlined: bool,
}

pub fn run(layout: &Layout, options: &Options) -> TaskResult<bool> {
    let qb = bench::qemu_bench(&options.name)?;
    if qb.disk_task.is_some() {
        return Err(fail!(
            "`{}` waits on a disk, so its instructions say little; profile `bench` or \
             `bench-storage`",
            qb.name
        ));
    }
    let host = setup::ensure(Needs {
        nightly: true,
        qemu: true,
    })?;
    let _lock = crate::lock::acquire(layout)?;
    let profile = Profile::Release;
    let kernel = build::kernel(layout, profile, KernelKind::Test)?;
    let image = bench::build_image(layout, profile, &kernel, qb)?;

    let mut images = vec![Image::load("kernel", &kernel, true)?];
    for program in qb.programs {
        images.push(Image::load(
            program,
            &layout.user_elf(program, profile),
            false,
        )?);
    }
    let mut profiler = Profiler::new(Symbolizer {
        images,
        inlined: options.inlined,
    });

    let machine = bench::machine(qb, &image, host.ovmf.as_deref());
    let mut cmd: Command = qemu::command(layout, &machine)?;
    cmd.args(["-d", "in_asm,exec,nochain", "-dfilter", LOGGED_RANGES])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    println!(
        "== profiling `{}` (QEMU logs every block: slow) ==",
        qb.name
    );
    let mut child = cmd
        .spawn()
        .map_err(|e| fail!("cannot start {}: {e}", setup::QEMU_BINARY))?;
    let serial_text = Arc::new(Mutex::new(String::new()));
    let stdout = child.stdout.take().expect("piped above");
    let reader = {
        let serial_text = serial_text.clone();
        std::thread::spawn(move || collect_serial(stdout, &serial_text))
    };
    let log = BufReader::with_capacity(1 << 20, child.stderr.take().expect("piped above"));
    let mut since_check = 0u32;
    for line in log.lines() {
        let line = line?;
        profiler.line(&line);
        since_check += 1;
        if since_check == 100_000 {
            since_check = 0;
            if let Some(until) = &options.until {
                let text = serial_text.lock().expect("reader holds it briefly");
                if printed_figure(&text, until) {
                    drop(text);
                    let _ = child.kill();
                    break;
                }
            }
        }
    }
    let _ = child.wait();
    let _ = reader.join();
    let text = serial_text.lock().expect("reader done").clone();
    let figures = serial::parse(&text).benches;
    print!("{}", profiler.report(options.per, options.top, &figures));
    Ok(true)
}

fn collect_serial(mut stdout: impl Read, into: &Mutex<String>) {
    let mut buf = [0u8; 4096];
    while let Ok(n) = stdout.read(&mut buf) {
        if n == 0 {
            break;
        }
        into.lock()
            .expect("only this thread writes")
            .push_str(&String::from_utf8_lossy(&buf[..n]));
    }
}

fn printed_figure(serial: &str, figure: &str) -> bool {
    serial
        .lines()
        .any(|l| l.split_whitespace().nth(1) == Some(figure) && l.starts_with("[BENCH]"))
}

/// One ELF: its loaded bytes (to tell programs apart) and its functions.
pub struct Image {
    name: String,
    /// `(virtual address, file bytes)` of each loaded segment.
    segments: Vec<(u64, Vec<u8>)>,
    /// Functions sorted by address: `(start, size, name)`.
    functions: Vec<(u64, u64, String)>,
    /// Where it was loaded less where it was linked: 0 for the ring-3
    /// programs; the kernel is position-independent and placed by the
    /// boot loader, so its offset is found from the first block that
    /// matches its code (see [`Image::find_offset`]).
    offset: Option<u64>,
    elf: std::path::PathBuf,
    /// Started at the first question (see [`Options::inlined`]).
    addr2line: Option<Addr2Line>,
}

impl Image {
    /// `placed_by_loader`: position-independent, loaded where the boot
    /// loader chose (the kernel).
    fn load(name: &str, elf: &Path, placed_by_loader: bool) -> TaskResult<Image> {
        let bytes = std::fs::read(elf).map_err(|e| fail!("reading {}: {e}", elf.display()))?;
        let segments = load_segments(&bytes)
            .ok_or_else(|| fail!("{} is not a 64-bit little-endian ELF", elf.display()))?;
        Ok(Image {
            name: name.to_string(),
            segments,
            functions: functions(elf)?,
            offset: if placed_by_loader { None } else { Some(0) },
            elf: elf.to_path_buf(),
            addr2line: None,
        })
    }

    /// Finds the load offset from a block of at least 16 bytes at
    /// `address`: the linked address with the same page offset whose bytes
    /// are `code`.
    fn find_offset(&mut self, address: u64, code: &[u8]) {
        if self.offset.is_some() || code.len() < 16 {
            return;
        }
        let page_offset = address & 0xfff;
        for (start, bytes) in &self.segments {
            let first_page = start & !0xfff;
            let end = start + bytes.len() as u64;
            let mut linked = first_page + page_offset;
            while linked < end {
                if linked >= *start && self.holds(linked, code) {
                    self.offset = Some(address.wrapping_sub(linked));
                    return;
                }
                linked += 0x1000;
            }
        }
    }

    /// The linked address of `address`, once the offset is known.
    fn linked(&self, address: u64) -> Option<u64> {
        Some(address.wrapping_sub(self.offset?))
    }

    /// Whether this image holds exactly `code` at `address`.
    fn holds(&self, address: u64, code: &[u8]) -> bool {
        self.segments.iter().any(|(start, bytes)| {
            address
                .checked_sub(*start)
                .and_then(|offset| usize::try_from(offset).ok())
                .and_then(|offset| bytes.get(offset..offset.checked_add(code.len())?))
                == Some(code)
        })
    }

    fn function_at(&self, address: u64) -> Option<&str> {
        let index = self
            .functions
            .partition_point(|(start, _, _)| *start <= address);
        let (start, size, name) = self.functions.get(index.checked_sub(1)?)?;
        (*size == 0 || address < start + size).then_some(name.as_str())
    }
}

/// A running `addr2line -a -f -i -C` on one ELF, asked one block's
/// addresses at a time.
struct Addr2Line {
    _child: std::process::Child,
    input: std::process::ChildStdin,
    output: BufReader<std::process::ChildStdout>,
}

/// Asked after a block's addresses: its answer (`??`) ends the block's.
const END_OF_QUESTIONS: u64 = 0xffff_ffff_ffff_fff0;

impl Addr2Line {
    fn start(elf: &Path) -> std::io::Result<Addr2Line> {
        let mut child = Command::new("addr2line")
            .args(["-a", "-f", "-i", "-C", "-e"])
            .arg(elf)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()?;
        let input = child.stdin.take().expect("piped");
        let output = BufReader::new(child.stdout.take().expect("piped"));
        Ok(Addr2Line {
            _child: child,
            input,
            output,
        })
    }

    /// The innermost function at each of `addresses` (`addr2line` flushes
    /// after every answer, so it can be asked through a pipe).
    fn innermost(&mut self, addresses: &[u64]) -> std::io::Result<Vec<String>> {
        use std::io::Write;
        let mut questions = String::new();
        for address in addresses.iter().chain([&END_OF_QUESTIONS]) {
            questions.push_str(&format!("{address:#x}\n"));
        }
        self.input.write_all(questions.as_bytes())?;
        self.input.flush()?;
        read_innermost(&mut self.output)
    }
}

/// Reads `addr2line -a -f -i` answers up to the one for
/// [`END_OF_QUESTIONS`]: each answer is the address, then a function and a
/// location per inlining level, innermost first.
fn read_innermost(output: &mut impl BufRead) -> std::io::Result<Vec<String>> {
    let mut names = Vec::new();
    let mut name_next = false;
    let mut line = String::new();
    loop {
        line.clear();
        if output.read_line(&mut line)? == 0 {
            return Err(std::io::ErrorKind::UnexpectedEof.into());
        }
        let text = line.trim_end();
        if let Some(hex) = text.strip_prefix("0x") {
            if u64::from_str_radix(hex, 16) == Ok(END_OF_QUESTIONS) {
                // Its function and location lines.
                for _ in 0..2 {
                    line.clear();
                    output.read_line(&mut line)?;
                }
                return Ok(names);
            }
            name_next = true;
        } else if name_next {
            names.push(text.to_string());
            name_next = false;
        }
    }
}

/// The file bytes of each `PT_LOAD` segment of a 64-bit little-endian ELF.
fn load_segments(elf: &[u8]) -> Option<Vec<(u64, Vec<u8>)>> {
    let u16_at = |at: usize| Some(u16::from_le_bytes(elf.get(at..at + 2)?.try_into().ok()?));
    let u32_at = |at: usize| Some(u32::from_le_bytes(elf.get(at..at + 4)?.try_into().ok()?));
    let u64_at = |at: usize| Some(u64::from_le_bytes(elf.get(at..at + 8)?.try_into().ok()?));
    if elf.get(..6)? != b"\x7fELF\x02\x01" {
        return None;
    }
    let table = usize::try_from(u64_at(0x20)?).ok()?;
    let entry_size = usize::from(u16_at(0x36)?);
    let entries = usize::from(u16_at(0x38)?);
    let mut segments = Vec::new();
    for i in 0..entries {
        let header = table + i * entry_size;
        const PT_LOAD: u32 = 1;
        if u32_at(header)? != PT_LOAD {
            continue;
        }
        let offset = usize::try_from(u64_at(header + 8)?).ok()?;
        let address = u64_at(header + 16)?;
        let size = usize::try_from(u64_at(header + 32)?).ok()?;
        segments.push((address, elf.get(offset..offset + size)?.to_vec()));
    }
    Some(segments)
}

/// An ELF's functions, from `nm` (demangled, with sizes).
fn functions(elf: &Path) -> TaskResult<Vec<(u64, u64, String)>> {
    let out = Command::new("nm")
        .args(["-C", "-n", "-S", "--defined-only"])
        .arg(elf)
        .output()
        .map_err(|e| fail!("cannot run nm (binutils): {e}"))?;
    if !out.status.success() {
        return Err(fail!("nm failed on {}", elf.display()));
    }
    Ok(parse_nm(&String::from_utf8_lossy(&out.stdout)))
}

/// `nm -n -S` lines of code symbols: `address size kind name`.
fn parse_nm(text: &str) -> Vec<(u64, u64, String)> {
    let mut functions: Vec<(u64, u64, String)> = text
        .lines()
        .filter_map(|line| {
            let mut words = line.splitn(4, ' ');
            let address = u64::from_str_radix(words.next()?, 16).ok()?;
            let size = u64::from_str_radix(words.next()?, 16).ok()?;
            let kind = words.next()?;
            let name = words.next()?;
            matches!(kind, "t" | "T" | "W" | "w").then(|| (address, size, name.to_string()))
        })
        .collect();
    functions.sort_by_key(|(address, _, _)| *address);
    functions
}

/// What QEMU logs: the ring-3 programs' code (linked from 4 MiB) and the
/// kernel half. The firmware and the boot loader, three quarters of the
/// blocks a run executes before the benchmark starts, are left out.
const LOGGED_RANGES: &str = "0x400000..0x7fffffff,0xffff800000000000..0xffffffffffffffff";

/// Kernel addresses are the upper half.
const KERNEL_HALF: u64 = 0xffff_8000_0000_0000;

/// Names the function a block belongs to.
pub struct Symbolizer {
    /// The kernel first, then the ring-3 programs.
    images: Vec<Image>,
    /// See [`Options::inlined`].
    inlined: bool,
}

impl Symbolizer {
    /// The image holding the block at `address` with `code`.
    fn image_of(&mut self, address: u64, code: &[u8]) -> Option<usize> {
        if address >= KERNEL_HALF {
            let kernel = self.images.first_mut()?;
            kernel.find_offset(address, code);
            Some(0)
        } else {
            (1..self.images.len()).find(|&i| self.images[i].holds(address, code))
        }
    }

    /// The block's instructions (at `addresses`) by function, in runs:
    /// `(name, instructions)`. One run, the symbol holding the block,
    /// unless [`Symbolizer::inlined`] (or when `addr2line` fails).
    fn parts(&mut self, addresses: &[u64], code: &[u8]) -> Vec<(String, u64)> {
        let first = addresses.first().copied().unwrap_or_default();
        let inlined = match self.inlined {
            true => self.inlined_names(addresses, code),
            false => None,
        };
        let Some((image, names)) = inlined else {
            return vec![(self.name(first, code), addresses.len() as u64)];
        };
        let mut parts: Vec<(String, u64)> = Vec::new();
        for name in names {
            let name = format!("{image}: {name}");
            match parts.last_mut() {
                Some((last, count)) if *last == name => *count += 1,
                _ => parts.push((name, 1)),
            }
        }
        parts
    }

    /// The image's name and the innermost function at each of `addresses`.
    fn inlined_names(&mut self, addresses: &[u64], code: &[u8]) -> Option<(String, Vec<String>)> {
        let index = self.image_of(*addresses.first()?, code)?;
        let image = &mut self.images[index];
        let linked = addresses
            .iter()
            .map(|a| image.linked(*a))
            .collect::<Option<Vec<u64>>>()?;
        if image.addr2line.is_none() {
            image.addr2line = Addr2Line::start(&image.elf).ok();
        }
        let names = image.addr2line.as_mut()?.innermost(&linked).ok()?;
        (names.len() == addresses.len()).then(|| (image.name.clone(), names))
    }

    fn name(&mut self, address: u64, code: &[u8]) -> String {
        let image = self.image_of(address, code).map(|i| &self.images[i]);
        match image {
            Some(image) => match image
                .linked(address)
                .and_then(|linked| image.function_at(linked))
            {
                Some(function) => format!("{}: {function}", image.name),
                None => format!("{}: {address:#x}", image.name),
            },
            None if address < 0x10_0000 => "[firmware and boot loader]".to_string(),
            None => "[other code]".to_string(),
        }
    }
}

/// A translated block, as the log's `IN:` section gave it.
struct Block {
    instructions: u64,
    /// The function of its first instruction.
    function: usize,
    /// Its instructions by function (see [`Symbolizer::parts`]).
    parts: Vec<(usize, u64)>,
    reads_tsc: bool,
    /// It writes to the serial port (see [`SERIAL_OUTPUT`]).
    prints: bool,
}

/// The kernel's serial output: every `[BENCH]` line passes through it, so
/// the windows opened after it belong to the next figure, even where the
/// same `rdtsc` block (one monomorphised measuring loop) measures several.
const SERIAL_OUTPUT: &str = "kernel: uart_16550::";

/// A group's key: how many times the run had printed between windows,
/// and the guest address of the `rdtsc` block that opens the group.
type GroupKey = Option<(u32, u64)>;

/// One measured loop (or the stretch between two): every window opened by
/// the same `rdtsc` block between the same two printed lines.
#[derive(Default)]
struct Group {
    opened_at: String,
    windows: u64,
    instructions: u64,
    by_function: HashMap<usize, u64>,
}

/// Reads QEMU's `-d in_asm,exec,nochain` log line by line.
pub struct Profiler {
    symbolizer: Symbolizer,
    functions: Vec<String>,
    function_ids: HashMap<String, usize>,
    /// The `IN:` section being read: its instructions' addresses, their
    /// bytes and whether one reads the TSC.
    reading: Option<(Vec<u64>, Vec<u8>, bool)>,
    /// Translated, not yet executed, by guest address.
    translated: HashMap<u64, Block>,
    /// Executed at least once, by QEMU's host address of the block.
    blocks: HashMap<u64, Block>,
    /// Groups by [`GroupKey`]; `None` is everything before the first
    /// window.
    groups: HashMap<GroupKey, Group>,
    order: Vec<GroupKey>,
    current: GroupKey,
    /// Lines printed so far (counted when the next window opens).
    phase: u32,
    printed: bool,
}

impl Profiler {
    pub fn new(symbolizer: Symbolizer) -> Self {
        let mut profiler = Profiler {
            symbolizer,
            functions: Vec::new(),
            function_ids: HashMap::new(),
            reading: None,
            translated: HashMap::new(),
            blocks: HashMap::new(),
            groups: HashMap::new(),
            order: vec![None],
            current: None,
            phase: 0,
            printed: false,
        };
        profiler.groups.insert(
            None,
            Group {
                opened_at: "the start of the run".to_string(),
                ..Group::default()
            },
        );
        profiler
    }

    pub fn line(&mut self, line: &str) {
        if line.starts_with("IN:") {
            self.finish_block();
            self.reading = Some((Vec::new(), Vec::new(), false));
        } else if let Some(rest) = line.strip_prefix("Trace ") {
            self.finish_block();
            if let Some((host, guest)) = parse_trace(rest) {
                self.executed(host, guest);
            }
        } else if let Some((address, bytes, mnemonic)) = parse_instruction(line) {
            if let Some((addresses, code, tsc)) = &mut self.reading {
                addresses.push(address);
                code.extend(bytes);
                *tsc |= mnemonic == "rdtsc";
            }
        } else if line.is_empty() {
            self.finish_block();
        }
    }

    fn finish_block(&mut self) {
        let Some((addresses, code, reads_tsc)) = self.reading.take() else {
            return;
        };
        let Some(&first) = addresses.first() else {
            return;
        };
        let parts: Vec<(usize, u64)> = self
            .symbolizer
            .parts(&addresses, &code)
            .into_iter()
            .map(|(name, count)| (self.intern(name), count))
            .collect();
        let function = parts[0].0;
        // By the symbol holding the block: with `--inlined`, the innermost
        // function of a write to the port is the port's.
        let prints = match self.symbolizer.inlined {
            true => self
                .symbolizer
                .name(first, &code)
                .starts_with(SERIAL_OUTPUT),
            false => self.functions[function].starts_with(SERIAL_OUTPUT),
        };
        self.translated.insert(
            first,
            Block {
                instructions: addresses.len() as u64,
                function,
                parts,
                reads_tsc: reads_tsc && first < KERNEL_HALF,
                prints,
            },
        );
    }

    fn intern(&mut self, name: String) -> usize {
        if let Some(&id) = self.function_ids.get(&name) {
            return id;
        }
        self.functions.push(name.clone());
        self.function_ids.insert(name, self.functions.len() - 1);
        self.functions.len() - 1
    }

    fn executed(&mut self, host: u64, guest: u64) {
        // A block just translated runs next: it is the one at this host
        // address from now on (QEMU reuses host addresses after a flush).
        if let Some(block) = self.translated.remove(&guest) {
            self.blocks.insert(host, block);
        }
        let Some(block) = self.blocks.get(&host) else {
            return;
        };
        let (instructions, function, reads_tsc) =
            (block.instructions, block.function, block.reads_tsc);
        self.printed |= block.prints;
        let group = self.groups.get_mut(&self.current).expect("current exists");
        group.instructions += instructions;
        for (part, count) in &block.parts {
            *group.by_function.entry(*part).or_default() += count;
        }
        if reads_tsc {
            if self.printed {
                self.printed = false;
                self.phase += 1;
            }
            self.current = Some((self.phase, guest));
            if !self.groups.contains_key(&self.current) {
                self.order.push(self.current);
                let opened_at = self.functions[function].clone();
                self.groups.insert(
                    self.current,
                    Group {
                        opened_at,
                        ..Group::default()
                    },
                );
            }
            self.groups
                .get_mut(&self.current)
                .expect("inserted")
                .windows += 1;
        }
    }

    /// The groups of at least 0.1% of all instructions, in the order they
    /// first ran, each with its `top` functions. (At 1%, the call round
    /// trip's group fell below the line once the call got cheap.)
    pub fn report(&self, per: Option<u64>, top: usize, figures: &[serial::Bench]) -> String {
        use std::fmt::Write;
        let total: u64 = self.groups.values().map(|g| g.instructions).sum();
        let mut out = String::new();
        let _ = writeln!(out, "{total} instructions executed in all");
        for (index, key) in self.order.iter().enumerate() {
            let group = &self.groups[key];
            if group.instructions * 1000 < total {
                continue;
            }
            let windows = group.windows.max(1);
            let divisor = windows * per.unwrap_or(1);
            let unit = if per.is_some() {
                "per iteration"
            } else {
                "per window"
            };
            let cost = group.instructions / divisor;
            let _ = writeln!(
                out,
                "\n== group {index}: opened by {}; {} windows, {} instructions, {cost} {unit}{} ==",
                group.opened_at,
                group.windows,
                group.instructions,
                per.and_then(|_| closest_figure(cost, figures))
                    .map(|name| format!(" (closest figure: {name})"))
                    .unwrap_or_default(),
            );
            let mut rows: Vec<(usize, u64)> =
                group.by_function.iter().map(|(f, n)| (*f, *n)).collect();
            rows.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(&b.0)));
            for (function, count) in rows.iter().take(top) {
                let _ = writeln!(
                    out,
                    "{:>10} {:>5.1}%  {}",
                    count / divisor,
                    *count as f64 * 100.0 / group.instructions as f64,
                    self.functions[*function]
                );
            }
            let mut by_image: Vec<(&str, u64)> = Vec::new();
            for (function, count) in &rows {
                let image = self.functions[*function]
                    .split(": ")
                    .next()
                    .unwrap_or_default();
                match by_image.iter_mut().find(|(name, _)| *name == image) {
                    Some((_, sum)) => *sum += count,
                    None => by_image.push((image, *count)),
                }
            }
            let images: Vec<String> = by_image
                .iter()
                .map(|(name, count)| format!("{name} {}", count / divisor))
                .collect();
            let _ = writeln!(out, "  by image: {}", images.join(", "));
        }
        out
    }
}

/// The `[BENCH]` figure in instructions nearest `cost`, within 10%.
fn closest_figure(cost: u64, figures: &[serial::Bench]) -> Option<&str> {
    figures
        .iter()
        .filter(|f| f.unit == "instructions" && f.value > 0.0)
        .map(|f| (f, (f.value - cost as f64).abs() / f.value))
        .filter(|(_, off)| *off <= 0.10)
        .min_by(|a, b| a.1.total_cmp(&b.1))
        .map(|(f, _)| f.name.as_str())
}

/// `0: 0x7f..00 [cs_base/pc/flags/cflags]` (after `Trace `): the block's
/// host address and guest address.
fn parse_trace(rest: &str) -> Option<(u64, u64)> {
    let mut words = rest.split_whitespace();
    words.next()?;
    let host = u64::from_str_radix(words.next()?.strip_prefix("0x")?, 16).ok()?;
    let fields = words.next()?.strip_prefix('[')?;
    let guest = fields.split('/').nth(1)?;
    Some((host, u64::from_str_radix(guest, 16).ok()?))
}

/// `0x00401000:  48 89 e5   movq %rsp, %rbp`: address, bytes, mnemonic.
fn parse_instruction(line: &str) -> Option<(u64, Vec<u8>, &str)> {
    let (address, rest) = line.strip_prefix("0x")?.split_once(':')?;
    let address = u64::from_str_radix(address, 16).ok()?;
    let mut bytes = Vec::new();
    let mut mnemonic = "";
    for word in rest.split_whitespace() {
        match (word.len(), u8::from_str_radix(word, 16)) {
            (2, Ok(byte)) if mnemonic.is_empty() => bytes.push(byte),
            _ => {
                mnemonic = word;
                break;
            }
        }
    }
    Some((address, bytes, mnemonic))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn image(name: &str, base: u64, code: &[u8], functions: &[(u64, u64, &str)]) -> Image {
        Image {
            name: name.to_string(),
            segments: vec![(base, code.to_vec())],
            functions: functions
                .iter()
                .map(|(a, s, n)| (*a, *s, n.to_string()))
                .collect(),
            offset: Some(0),
            elf: std::path::PathBuf::new(),
            addr2line: None,
        }
    }

    /// The kernel's code: linked at 0x1000, loaded at 0xffff_ffff_8000_1000.
    const KERNEL_CODE: [u8; 18] = [
        0x10, 0x11, 0x12, 0x13, 0x14, 0x15, 0x16, 0x17, 0x18, 0x19, 0x1a, 0x1b, 0x1c, 0x1d, 0x1e,
        0x1f, 0xe6, 0xf8,
    ];

    /// A kernel at the top, and two programs linked at the same base whose
    /// code differs: `bench` (reads the TSC) and `echo`.
    fn symbolizer() -> Symbolizer {
        Symbolizer {
            inlined: false,
            images: vec![
                Image {
                    offset: None,
                    ..image(
                        "kernel",
                        0x1000,
                        &KERNEL_CODE,
                        &[
                            (0x1000, 16, "syscall_entry"),
                            (0x1010, 2, "uart_16550::port::SerialPort::send_raw"),
                        ],
                    )
                },
                image(
                    "bench",
                    0x40_1000,
                    &[0x0f, 0x31, 0xc3, 0x90],
                    &[(0x40_1000, 4, "measure")],
                ),
                image(
                    "echo",
                    0x40_1000,
                    &[0x55, 0xc3, 0x90, 0x90],
                    &[(0x40_1000, 4, "serve")],
                ),
            ],
        }
    }

    fn feed(profiler: &mut Profiler, log: &str) {
        for line in log.lines() {
            profiler.line(line);
        }
    }

    const LOG: &str = "\
----------------
IN: 
0x00401000:  0f 31                    rdtsc    
0x00401002:  c3                       retq     

Trace 0: 0x7f0000000100 [0000000000000000/0000000000401000/00000040/ff020200] 
----------------
IN: 
0xffffffff80001000:  10 11 12 13 14 15        op
0xffffffff80001006:  16 17 18 19 1a           op
0xffffffff8000100b:  1b 1c 1d 1e 1f           op

Trace 0: 0x7f0000000200 [0000000000000000/ffffffff80001000/00000040/ff020200] 
----------------
IN: 
0x00401000:  55                       pushq    %rbp
0x00401001:  c3                       retq     

Trace 0: 0x7f0000000300 [0000000000000000/0000000000401000/00000040/ff020200] 
Trace 0: 0x7f0000000200 [0000000000000000/ffffffff80001000/00000040/ff020200] 
Trace 0: 0x7f0000000100 [0000000000000000/0000000000401000/00000040/ff020200] 
Trace 0: 0x7f0000000200 [0000000000000000/ffffffff80001000/00000040/ff020200] 
";

    #[test]
    fn blocks_are_charged_to_their_function_and_program_by_their_bytes() {
        let mut profiler = Profiler::new(symbolizer());
        feed(&mut profiler, LOG);
        let group = &profiler.groups[&Some((0, 0x40_1000))];
        let count = |name: &str| group.by_function[&profiler.function_ids[name]];
        // Two windows opened by the bench's rdtsc block: the kernel block
        // ran three times in them (3 instructions each), the echo block
        // (same address as the bench's, other bytes) once, and the
        // second rdtsc block counts in the window it closes.
        assert_eq!(group.windows, 2);
        assert_eq!(count("kernel: syscall_entry"), 9);
        assert_eq!(count("echo: serve"), 2);
        assert_eq!(count("bench: measure"), 2);
        assert_eq!(group.instructions, 13);
        // The first rdtsc block ran before any window was open.
        assert_eq!(profiler.groups[&None].instructions, 2);
    }

    #[test]
    fn a_printed_line_starts_new_groups_at_the_same_rdtsc() {
        let mut profiler = Profiler::new(symbolizer());
        feed(&mut profiler, LOG);
        feed(
            &mut profiler,
            "\
IN: 
0xffffffff80001010:  e6 f8                    outb     %al, $0xf8

Trace 0: 0x7f0000000400 [0000000000000000/ffffffff80001010/00000040/ff020200] 
Trace 0: 0x7f0000000100 [0000000000000000/0000000000401000/00000040/ff020200] 
Trace 0: 0x7f0000000200 [0000000000000000/ffffffff80001000/00000040/ff020200] 
Trace 0: 0x7f0000000100 [0000000000000000/0000000000401000/00000040/ff020200] 
",
        );
        // The two windows of LOG, then the print, which counts in the
        // window it ends; the windows after it are a group of their own.
        assert_eq!(profiler.groups[&Some((0, 0x40_1000))].windows, 2);
        assert_eq!(
            profiler.groups[&Some((0, 0x40_1000))].instructions,
            13 + 1 + 2
        );
        let after = &profiler.groups[&Some((1, 0x40_1000))];
        assert_eq!((after.windows, after.instructions), (2, 3 + 2));
    }

    #[test]
    fn the_report_names_the_figure_a_group_costs_per_iteration() {
        let mut profiler = Profiler::new(symbolizer());
        feed(&mut profiler, LOG);
        let figures = [
            serial::Bench {
                name: "far_off".into(),
                value: 20.0,
                unit: "instructions".into(),
            },
            serial::Bench {
                name: "this_loop".into(),
                value: 6.0,
                unit: "instructions".into(),
            },
        ];
        // 13 instructions over 2 windows of 1 iteration: 6 per iteration.
        let report = profiler.report(Some(1), 5, &figures);
        assert!(
            report.contains("6 per iteration (closest figure: this_loop)"),
            "{report}"
        );
        assert!(report.contains("kernel 4, bench 1, echo 1"), "{report}");
    }

    #[test]
    fn addr2line_answers_give_the_innermost_function_of_each_address() {
        let output = "\
0x0000000000001000
inner
src/a.rs:3
outer
src/b.rs:9
0x0000000000001004
outer
src/b.rs:10
0xfffffffffffffff0
??
??:0
";
        let mut reader = std::io::Cursor::new(output.as_bytes());
        assert_eq!(read_innermost(&mut reader).unwrap(), vec!["inner", "outer"]);
        // Nothing is left of the sentinel's answer for the next block.
        let mut rest = String::new();
        reader.read_to_string(&mut rest).unwrap();
        assert_eq!(rest, "");
    }

    #[test]
    fn nm_lines_give_code_symbols_sorted() {
        let text = "0000000000401010 0000000000000004 T b::second\n\
                    0000000000401000 0000000000000010 t a::first\n\
                    0000000000402000 0000000000000008 D data\n";
        let functions = parse_nm(text);
        assert_eq!(
            functions,
            vec![
                (0x40_1000, 0x10, "a::first".to_string()),
                (0x40_1010, 4, "b::second".to_string())
            ]
        );
    }

    #[test]
    fn the_kernels_load_offset_is_found_from_its_code() {
        let mut symbolizer = symbolizer();
        // Too short to place it: no offset, so no function.
        assert_eq!(
            symbolizer.name(0xffff_ffff_8000_1000, &KERNEL_CODE[..8]),
            "kernel: 0xffffffff80001000"
        );
        assert_eq!(
            symbolizer.name(0xffff_ffff_8000_1000, &KERNEL_CODE[..16]),
            "kernel: syscall_entry"
        );
        assert_eq!(
            symbolizer.name(0xffff_ffff_8000_1004, &KERNEL_CODE[4..6]),
            "kernel: syscall_entry"
        );
        assert_eq!(
            symbolizer.name(0xffff_ffff_8000_1012, &[0]),
            "kernel: 0xffffffff80001012"
        );
    }

    #[test]
    fn an_address_past_a_sized_symbol_is_no_function() {
        let image = image("p", 0x1000, &[0; 4], &[(0x1000, 2, "f")]);
        assert_eq!(image.function_at(0x1001), Some("f"));
        assert_eq!(image.function_at(0x1002), None);
        assert_eq!(image.function_at(0xfff), None);
    }
}
