//! The service manifest: a small INI-like text file, easy to write by hand
//! and parsed without allocation-heavy machinery in ring 3. xtask packs it
//! into the boot ramdisk as the file `manifest`.
//!
//! ```text
//! # Comments start with '#'; blank lines are ignored.
//! [storage]                 # a section per service; the name is the header
//! id = 2                    # required: the ServiceId (decimal)
//! image = storage           # program in the boot image; defaults to the name
//! restart = on-failure      # never | always | on-failure | backoff:<max_attempts>
//! capabilities = registry   # comma list: registry (this service's own id only), boot-image, boot-files,
//!                           #   serial-input, kernel-info, block-device, framebuffer, pm-control
//! depends =                 # comma list of service names
//! trust = core              # trust domain; defaults to "user"
//! kind = service            # system | service | component; defaults to service
//! priority = 8              # 0..31; defaults to 8
//! ready = registered        # registered | spawned; defaults to registered
//! memory = 256K             # kernel memory (channels, capabilities, queued
//!                           #   messages) per instance; bytes, K or M suffix;
//!                           #   defaults to 256K
//! frames = 16M              # memory for its address space (pages, page
//!                           #   tables, a driver's DMA memory), rounded up
//!                           #   to 4 KiB frames; defaults to 16M
//! ports = 0x60-0x64         # device capabilities, for drivers: I/O port ranges,
//! irq = 1                   #   interrupt lines (each `N` or `N-M`),
//! device-memory = 0xfe000000+0x4000   # physical ranges (base+length, page-aligned),
//! dma = 64K                 #   a DMA allowance (bytes; K and M suffixes)
//! pci = 1af4:1001, class:01:00  # a driver: the PCI devices it drives (vendor:device
//!                           #   ids or class:CC:SS, hexadecimal)
//! ```
//!
//! A section with `pci` is a driver. It starts only once the `pci` service
//! has reported a device it matches, with that device's capabilities
//! after those of `capabilities` (see [`crate::devices::driver_resources`];
//! its `dma` comes last, with them), and depends on the `pci` service.
//! If no device matches, it never starts, and services depending on it
//! start without it. Another service names `driver:NAME` in its
//! `capabilities` to receive the capability that driver serves through
//! (and so depends on it).
//!
//! Both budgets are carved out of the process manager's own (see
//! `pandagen_abi::budget`): an instance that tries to hold more gets
//! `ResourceExhausted(MemoryBudget)` and hurts nobody else, and its death
//! returns everything it held.
//!
//! Each device key is a comma list; every item becomes one capability,
//! minted at spawn from the process manager's root capability for that
//! resource (never wider: the kernel refuses), after those of
//! `capabilities`, in the order `ports`, `device-memory`, `irq`, `dma`.
//!
//! Parsing ([`parse`]) checks syntax and resolves names; every failure is a
//! [`ManifestError`] that names the line or the service. [`parse`] then
//! validates the whole graph (see [`crate::validate`]) so that a manifest
//! with a cycle or a missing dependency is rejected before anything starts.

use alloc::collections::BTreeMap;
use alloc::string::{String, ToString};
use alloc::vec::Vec;
use core::fmt;

use pandagen_abi::api::limits::MAX_TASK_NAME;
use pandagen_abi::budget::FRAME_BYTES;
use pandagen_abi::device::{DeviceResource, InterruptLines, PhysRange, PortRange};
use pandagen_abi::{Budget, IdentityKind, Priority, ServiceId, TrustDomain};

use crate::descriptor::{CapabilityName, DriverSpec, Readiness, ServiceDescriptor};
use crate::devices::DeviceMatch;
use crate::policy::RestartPolicy;
use crate::validate::{self, Manifest, ValidationError};

/// Why a manifest line could not be read.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SyntaxError {
    /// A `key = value` line before the first `[service]` header.
    KeyOutsideSection,
    /// A line that is neither a header, a `key = value`, a comment nor blank.
    MalformedLine,
    /// A `[...]` header with an empty or invalid service name.
    InvalidServiceName(String),
    /// A key this format does not define.
    UnknownKey(String),
    /// The same key twice in one section.
    DuplicateKey(String),
    /// A value that does not parse for its key.
    BadValue { key: String, value: String },
}

/// Why a manifest was rejected.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ManifestError {
    /// Not valid UTF-8.
    NotText,
    /// A syntax error at a 1-based line number.
    Syntax { line: u32, error: SyntaxError },
    /// A service section without a required key.
    MissingKey { service: String, key: &'static str },
    /// `depends` names a service the manifest lacks.
    UnknownService { service: String, named: String },
    /// The graph or the descriptors are inconsistent.
    Invalid(ValidationError),
}

impl From<ValidationError> for ManifestError {
    fn from(e: ValidationError) -> Self {
        ManifestError::Invalid(e)
    }
}

impl fmt::Display for ManifestError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ManifestError::NotText => f.write_str("manifest is not UTF-8 text"),
            ManifestError::Syntax { line, error } => write!(f, "manifest line {line}: {error:?}"),
            ManifestError::MissingKey { service, key } => {
                write!(f, "service {service} has no `{key}`")
            }
            ManifestError::UnknownService { service, named } => {
                write!(
                    f,
                    "service {service} names {named}, which is not in the manifest"
                )
            }
            ManifestError::Invalid(e) => write!(f, "{e}"),
        }
    }
}

/// A service section as written, names unresolved.
struct Section {
    name: String,
    values: BTreeMap<String, (u32, String)>,
}

/// The budget of an instance whose section names none: room for a few
/// hundred channels or a full queue of large messages, and a service
/// image several times the size of today's.
pub const DEFAULT_BUDGET: Budget = Budget::new(256 << 10, (16 << 20) / FRAME_BYTES);

const KEYS: [&str; 16] = [
    "id",
    "image",
    "restart",
    "capabilities",
    "depends",
    "trust",
    "kind",
    "priority",
    "ready",
    "memory",
    "frames",
    "ports",
    "device-memory",
    "irq",
    "dma",
    "pci",
];

/// Parse and validate a manifest.
pub fn parse(bytes: &[u8]) -> Result<Manifest, ManifestError> {
    let text = core::str::from_utf8(bytes).map_err(|_| ManifestError::NotText)?;
    let sections = sections(text)?;
    let ids = resolve_ids(&sections)?;
    let mut descriptors = Vec::with_capacity(sections.len());
    for section in &sections {
        descriptors.push(descriptor(section, &ids)?);
    }
    Ok(validate::validate(descriptors)?)
}

fn syntax(line: u32, error: SyntaxError) -> ManifestError {
    ManifestError::Syntax { line, error }
}

fn valid_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= MAX_TASK_NAME
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'_')
}

fn sections(text: &str) -> Result<Vec<Section>, ManifestError> {
    let mut sections: Vec<Section> = Vec::new();
    for (index, raw) in text.lines().enumerate() {
        let line = u32::try_from(index + 1).unwrap_or(u32::MAX);
        let content = raw.split('#').next().unwrap_or("").trim();
        if content.is_empty() {
            continue;
        }
        if let Some(header) = content.strip_prefix('[') {
            let name = header
                .strip_suffix(']')
                .ok_or(syntax(line, SyntaxError::MalformedLine))?
                .trim();
            if !valid_name(name) {
                return Err(syntax(line, SyntaxError::InvalidServiceName(name.into())));
            }
            sections.push(Section {
                name: name.into(),
                values: BTreeMap::new(),
            });
            continue;
        }
        let (key, value) = content
            .split_once('=')
            .ok_or(syntax(line, SyntaxError::MalformedLine))?;
        let (key, value) = (key.trim(), value.trim());
        let section = sections
            .last_mut()
            .ok_or(syntax(line, SyntaxError::KeyOutsideSection))?;
        if !KEYS.contains(&key) {
            return Err(syntax(line, SyntaxError::UnknownKey(key.into())));
        }
        if section
            .values
            .insert(key.into(), (line, value.into()))
            .is_some()
        {
            return Err(syntax(line, SyntaxError::DuplicateKey(key.into())));
        }
    }
    Ok(sections)
}

fn bad_value(line: u32, key: &str, value: &str) -> ManifestError {
    syntax(
        line,
        SyntaxError::BadValue {
            key: key.into(),
            value: value.into(),
        },
    )
}

/// Every section's service id, by name (duplicates are caught by validation).
fn resolve_ids(sections: &[Section]) -> Result<BTreeMap<String, ServiceId>, ManifestError> {
    let mut ids = BTreeMap::new();
    for section in sections {
        let (line, value) = section
            .values
            .get("id")
            .ok_or_else(|| ManifestError::MissingKey {
                service: section.name.clone(),
                key: "id",
            })?;
        let raw: u64 = value.parse().map_err(|_| bad_value(*line, "id", value))?;
        if ids.contains_key(&section.name) {
            return Err(ValidationError::DuplicateName(section.name.clone()).into());
        }
        ids.insert(section.name.clone(), ServiceId::from_raw(raw));
    }
    Ok(ids)
}

fn list(value: &str) -> impl Iterator<Item = &str> {
    value.split(',').map(str::trim).filter(|s| !s.is_empty())
}

fn lookup_name(
    ids: &BTreeMap<String, ServiceId>,
    service: &str,
    named: &str,
) -> Result<ServiceId, ManifestError> {
    ids.get(named)
        .copied()
        .ok_or_else(|| ManifestError::UnknownService {
            service: service.into(),
            named: named.into(),
        })
}

fn descriptor(
    section: &Section,
    ids: &BTreeMap<String, ServiceId>,
) -> Result<ServiceDescriptor, ManifestError> {
    let name = section.name.as_str();
    let get = |key: &str| section.values.get(key).map(|(l, v)| (*l, v.as_str()));

    let image = match get("image") {
        Some((line, value)) if !valid_name(value) => return Err(bad_value(line, "image", value)),
        Some((_, value)) => value.to_string(),
        None => name.to_string(),
    };
    let restart_policy = match get("restart") {
        None => RestartPolicy::OnFailure,
        Some((line, value)) => parse_policy(value).ok_or(bad_value(line, "restart", value))?,
    };
    let mut capabilities = Vec::new();
    if let Some((line, value)) = get("capabilities") {
        for item in list(value) {
            let capability = match item {
                "registry" => CapabilityName::Registry,
                "boot-image" => CapabilityName::BootImage,
                "boot-files" => CapabilityName::BootFiles,
                "serial-input" => CapabilityName::SerialInput,
                "kernel-info" => CapabilityName::KernelInfo,
                "block-device" => CapabilityName::BlockDevice,
                "framebuffer" => CapabilityName::Framebuffer,
                "pm-control" => CapabilityName::PmControl,
                _ => match item.strip_prefix("driver:") {
                    Some(driver) => CapabilityName::Driver(lookup_name(ids, name, driver.trim())?),
                    None => return Err(bad_value(line, "capabilities", item)),
                },
            };
            capabilities.push(capability);
        }
    }
    let driver = match get("pci") {
        None => None,
        Some((line, value)) => {
            let mut matches = Vec::new();
            for item in list(value) {
                matches.push(DeviceMatch::parse(item).ok_or(bad_value(line, "pci", item))?);
            }
            let dma = match get("dma") {
                None => None,
                Some((line, value)) => {
                    Some(parse_size(value).ok_or(bad_value(line, "dma", value))?)
                }
            };
            Some(DriverSpec { matches, dma })
        }
    };
    for key in ["ports", "device-memory", "irq", "dma"] {
        // A driver's DMA allowance comes with its device, after the BARs.
        if key == "dma" && driver.is_some() {
            continue;
        }
        if let Some((line, value)) = get(key) {
            for item in list(value) {
                let resource = parse_device(key, item).ok_or(bad_value(line, key, item))?;
                capabilities.push(CapabilityName::Device(resource));
            }
        }
    }
    let mut dependencies = Vec::new();
    if let Some((_, value)) = get("depends") {
        for item in list(value) {
            dependencies.push(lookup_name(ids, name, item)?);
        }
    }
    for capability in &capabilities {
        if let CapabilityName::Driver(service) = capability {
            if !dependencies.contains(service) {
                dependencies.push(*service);
            }
        }
    }
    let trust_domain = match get("trust") {
        None => TrustDomain::user(),
        Some((line, value)) if !valid_name(value) => return Err(bad_value(line, "trust", value)),
        Some((_, value)) => TrustDomain::new(value),
    };
    let kind = match get("kind") {
        None | Some((_, "service")) => IdentityKind::Service,
        Some((_, "system")) => IdentityKind::System,
        Some((_, "component")) => IdentityKind::Component,
        Some((line, value)) => return Err(bad_value(line, "kind", value)),
    };
    let priority = match get("priority") {
        None => Priority::NORMAL,
        Some((line, value)) => match value.parse::<u8>() {
            Ok(level) if usize::from(level) < Priority::LEVELS => Priority(level),
            _ => return Err(bad_value(line, "priority", value)),
        },
    };
    let readiness = match get("ready") {
        None | Some((_, "registered")) => Readiness::Registered,
        Some((_, "spawned")) => Readiness::Spawned,
        Some((line, value)) => return Err(bad_value(line, "ready", value)),
    };
    let size = |key: &str| -> Result<Option<u64>, ManifestError> {
        match get(key) {
            None => Ok(None),
            Some((line, value)) => parse_size(value)
                .map(Some)
                .ok_or(bad_value(line, key, value)),
        }
    };
    let budget = Budget::new(
        size("memory")?.unwrap_or(DEFAULT_BUDGET.memory),
        size("frames")?.map_or(DEFAULT_BUDGET.frames, |bytes| bytes.div_ceil(FRAME_BYTES)),
    );
    Ok(ServiceDescriptor {
        service_id: ids[name],
        name: name.into(),
        image,
        restart_policy,
        capabilities,
        dependencies,
        trust_domain,
        kind,
        priority,
        readiness,
        budget,
        driver,
    })
}

/// A byte count: decimal digits with an optional `K` (KiB) or `M` (MiB)
/// suffix.
fn parse_size(value: &str) -> Option<u64> {
    let (digits, unit) = match value.as_bytes().last()? {
        b'K' | b'k' => (&value[..value.len() - 1], 1u64 << 10),
        b'M' | b'm' => (&value[..value.len() - 1], 1u64 << 20),
        _ => (value, 1),
    };
    digits.trim().parse::<u64>().ok()?.checked_mul(unit)
}

/// A number in decimal or `0x` hexadecimal.
fn parse_number(text: &str) -> Option<u64> {
    match text.strip_prefix("0x") {
        Some(hex) => u64::from_str_radix(hex, 16).ok(),
        None => text.parse().ok(),
    }
}

/// `N` or `N-M` (inclusive).
fn parse_span(text: &str) -> Option<(u64, u64)> {
    match text.split_once('-') {
        Some((first, last)) => Some((parse_number(first.trim())?, parse_number(last.trim())?)),
        None => parse_number(text).map(|n| (n, n)),
    }
}

/// One item of a device key; `None` if it does not parse or names an
/// empty or malformed range (the kernel checks it against the grant).
fn parse_device(key: &str, item: &str) -> Option<DeviceResource> {
    let resource = match key {
        "ports" => {
            let (first, last) = parse_span(item)?;
            DeviceResource::Ports(PortRange::new(
                u16::try_from(first).ok()?,
                u16::try_from(last).ok()?,
            ))
        }
        "irq" => {
            let (first, last) = parse_span(item)?;
            DeviceResource::Interrupts(InterruptLines {
                first: u8::try_from(first).ok()?,
                last: u8::try_from(last).ok()?,
            })
        }
        "device-memory" => {
            let (base, len) = item.split_once('+')?;
            DeviceResource::Memory(PhysRange::new(
                parse_number(base.trim())?,
                parse_number(len.trim())?,
            ))
        }
        "dma" => DeviceResource::Dma {
            bytes: parse_size(item)?,
        },
        _ => return None,
    };
    resource.is_valid().then_some(resource)
}

fn parse_policy(value: &str) -> Option<RestartPolicy> {
    match value {
        "never" => Some(RestartPolicy::Never),
        "always" => Some(RestartPolicy::Always),
        "on-failure" => Some(RestartPolicy::OnFailure),
        other => {
            let attempts = other.strip_prefix("backoff:")?.trim().parse().ok()?;
            Some(RestartPolicy::ExponentialBackoff {
                max_attempts: attempts,
            })
        }
    }
}
