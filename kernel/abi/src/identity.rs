//! Execution identity and exit notifications.
//!
//! Identity is for supervision and audit; it never grants authority (only
//! capabilities do). Parent/child links are structural and immutable.

use alloc::string::String;
use core::fmt;
use serde::{Deserialize, Serialize};

use crate::ids::{ExecutionId, TaskId};

/// The type of an execution context.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum IdentityKind {
    /// Core system component.
    System,
    /// User-space service.
    Service,
    /// Application component.
    Component,
    /// One pipeline stage execution.
    PipelineStage,
}

/// The longest trust-domain name kept, in bytes.
pub const MAX_TRUST_DOMAIN: usize = 32;

/// A trust-domain tag. Domains are audited, not enforced: crossing one is
/// allowed and recorded. The name is held inline (at most
/// [`MAX_TRUST_DOMAIN`] bytes; a longer one is cut at a character
/// boundary), so copying a domain — into every cross-domain audit record —
/// never allocates.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct TrustDomain(heapless::String<MAX_TRUST_DOMAIN>);

impl TrustDomain {
    pub fn core() -> Self {
        TrustDomain::new("core")
    }

    pub fn user() -> Self {
        TrustDomain::new("user")
    }

    pub fn sandbox() -> Self {
        TrustDomain::new("sandbox")
    }

    pub fn new(name: impl AsRef<str>) -> Self {
        TrustDomain(crate::text::bounded(name.as_ref()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// Domains compare with their names, so audit assertions can read
/// `from_domain == "core"` (docs/interfaces.md).
impl PartialEq<str> for TrustDomain {
    fn eq(&self, other: &str) -> bool {
        self.0.as_str() == other
    }
}

impl PartialEq<&str> for TrustDomain {
    fn eq(&self, other: &&str) -> bool {
        self.0.as_str() == *other
    }
}

impl fmt::Display for TrustDomain {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// Who and what an execution is. Immutable once created: the builder
/// methods consume the value before it is registered with a kernel.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct IdentityMetadata {
    pub execution_id: ExecutionId,
    pub kind: IdentityKind,
    pub task_id: Option<TaskId>,
    pub parent_id: Option<ExecutionId>,
    pub creator_id: Option<ExecutionId>,
    pub created_at_nanos: u64,
    pub trust_domain: TrustDomain,
    pub name: String,
}

impl IdentityMetadata {
    /// A new identity, not yet recorded: its `execution_id` is
    /// [`ExecutionId::UNASSIGNED`] until a kernel records it
    /// (`create_identity` returns the id it issued, and the kernel's copy
    /// carries it). Only the kernel issues execution ids, so an id a caller
    /// holds always names the execution the kernel recorded under it, and
    /// lineage (`with_parent`, `with_creator`) built from such ids is
    /// checked by the kernel when the identity is recorded.
    pub fn new(
        kind: IdentityKind,
        trust_domain: TrustDomain,
        name: impl Into<String>,
        created_at_nanos: u64,
    ) -> Self {
        IdentityMetadata {
            execution_id: ExecutionId::UNASSIGNED,
            kind,
            task_id: None,
            parent_id: None,
            creator_id: None,
            created_at_nanos,
            trust_domain,
            name: name.into(),
        }
    }

    pub fn with_task_id(mut self, task_id: TaskId) -> Self {
        self.task_id = Some(task_id);
        self
    }

    pub fn with_parent(mut self, parent_id: ExecutionId) -> Self {
        self.parent_id = Some(parent_id);
        self
    }

    pub fn with_creator(mut self, creator_id: ExecutionId) -> Self {
        self.creator_id = Some(creator_id);
        self
    }

    pub fn same_domain(&self, other: &IdentityMetadata) -> bool {
        self.trust_domain == other.trust_domain
    }

    pub fn is_child_of(&self, parent_id: ExecutionId) -> bool {
        self.parent_id == Some(parent_id)
    }
}

/// A CPU exception raised by a ring-3 task, named for its fault report.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum CpuFault {
    /// #DE.
    DivideError,
    /// #BP (an `int3` the task did not expect to survive).
    Breakpoint,
    /// #UD.
    InvalidOpcode,
    /// #GP, including privileged instructions executed in ring 3.
    GeneralProtection { error_code: u64 },
    /// #PF at `address`.
    PageFault { address: u64, error_code: u64 },
    /// #PF in the guard page below the user stack.
    StackOverflow { address: u64 },
    /// #AC.
    AlignmentCheck,
    /// Any other vector.
    Other { vector: u8, error_code: u64 },
}

impl fmt::Display for CpuFault {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CpuFault::DivideError => f.write_str("divide error (#DE)"),
            CpuFault::Breakpoint => f.write_str("breakpoint (#BP)"),
            CpuFault::InvalidOpcode => f.write_str("invalid opcode (#UD)"),
            CpuFault::GeneralProtection { error_code } => {
                write!(f, "general protection fault (#GP, error {error_code:#x})")
            }
            CpuFault::PageFault {
                address,
                error_code,
            } => {
                write!(f, "page fault (#PF) at {address:#x}, error {error_code:#x}")
            }
            CpuFault::StackOverflow { address } => {
                write!(f, "stack overflow into the guard page at {address:#x}")
            }
            CpuFault::AlignmentCheck => f.write_str("alignment check (#AC)"),
            CpuFault::Other { vector, error_code } => {
                write!(f, "exception {vector} (error {error_code:#x})")
            }
        }
    }
}

/// Why a task failed.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum FailureCause {
    /// The task raised a CPU exception.
    Fault(CpuFault),
    /// The task panicked (its runtime reported it).
    Panic,
    /// A supervisor or test described the failure in words.
    Described(String),
}

impl fmt::Display for FailureCause {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            FailureCause::Fault(fault) => write!(f, "{fault}"),
            FailureCause::Panic => f.write_str("panicked"),
            FailureCause::Described(text) => f.write_str(text),
        }
    }
}

impl From<&str> for FailureCause {
    fn from(text: &str) -> Self {
        FailureCause::Described(text.into())
    }
}

impl From<String> for FailureCause {
    fn from(text: String) -> Self {
        FailureCause::Described(text)
    }
}

/// How a task ended.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum ExitReason {
    Normal,
    Failure { error: FailureCause },
    Cancelled { reason: String },
    Timeout,
}

/// The longest text an exit reason keeps (a described failure or a
/// cancellation reason), in bytes. Longer text is cut at a character
/// boundary when the task ends, so that every exit notification fits one
/// message and none is ever lost to its size.
pub const MAX_EXIT_REASON_TEXT: usize = 256;

impl ExitReason {
    pub fn is_failure(&self) -> bool {
        matches!(self, ExitReason::Failure { .. })
    }

    /// This reason with its text cut to [`MAX_EXIT_REASON_TEXT`] bytes.
    pub fn bounded(self) -> ExitReason {
        fn cut(mut text: String) -> String {
            let kept = crate::text::truncate(&text, MAX_EXIT_REASON_TEXT).len();
            text.truncate(kept);
            text
        }
        match self {
            ExitReason::Failure {
                error: FailureCause::Described(text),
            } => ExitReason::Failure {
                error: FailureCause::Described(cut(text)),
            },
            ExitReason::Cancelled { reason } => ExitReason::Cancelled {
                reason: cut(reason),
            },
            other => other,
        }
    }
}

/// Produced once for every task termination.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ExitNotification {
    pub execution_id: ExecutionId,
    pub task_id: Option<TaskId>,
    pub reason: ExitReason,
    pub terminated_at_nanos: u64,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn new_identities_wait_for_the_kernel_to_issue_their_id_and_record_lineage() {
        let parent = IdentityMetadata::new(IdentityKind::Service, TrustDomain::core(), "pm", 0);
        assert_eq!(parent.execution_id, ExecutionId::UNASSIGNED);
        let issued_by_a_kernel = ExecutionId::from_raw(3);
        let child =
            IdentityMetadata::new(IdentityKind::Component, TrustDomain::user(), "worker", 5)
                .with_parent(issued_by_a_kernel)
                .with_creator(issued_by_a_kernel);
        assert!(!child.execution_id.is_assigned());
        assert!(child.is_child_of(issued_by_a_kernel));
        assert!(!child.is_child_of(ExecutionId::from_raw(4)));
        assert!(!parent.same_domain(&child));
    }

    #[test]
    fn failure_reasons_read_like_the_reference() {
        let reason = ExitReason::Failure {
            error: "disk on fire".into(),
        };
        match &reason {
            ExitReason::Failure { error } => assert_eq!(alloc::format!("{error}"), "disk on fire"),
            _ => unreachable!(),
        }
        assert!(reason.is_failure());
        let fault = FailureCause::Fault(CpuFault::PageFault {
            address: 0x10,
            error_code: 4,
        });
        assert!(alloc::format!("{fault}").contains("0x10"));
    }

    #[test]
    fn bounded_reasons_keep_short_text_and_cut_long_text_on_a_char_boundary() {
        let short = ExitReason::Failure {
            error: "short".into(),
        };
        assert_eq!(short.clone().bounded(), short);
        let long = "é".repeat(MAX_EXIT_REASON_TEXT);
        let ExitReason::Cancelled { reason } = (ExitReason::Cancelled {
            reason: long.clone(),
        })
        .bounded() else {
            unreachable!()
        };
        assert!(reason.len() <= MAX_EXIT_REASON_TEXT && long.starts_with(&reason));
        assert_eq!(reason.len(), MAX_EXIT_REASON_TEXT);
        let ExitReason::Failure {
            error: FailureCause::Described(text),
        } = (ExitReason::Failure {
            error: "x".repeat(100_000).into(),
        })
        .bounded()
        else {
            unreachable!()
        };
        assert_eq!(text.len(), MAX_EXIT_REASON_TEXT);
    }

    #[test]
    fn trust_domains_have_the_reference_names() {
        assert_eq!(TrustDomain::core().as_str(), "core");
        assert_eq!(TrustDomain::user().as_str(), "user");
        assert_eq!(TrustDomain::sandbox().as_str(), "sandbox");
        assert!(TrustDomain::core() == "core");
        assert!(&TrustDomain::user() == "user");
        assert!(TrustDomain::user() != "core");
    }

    #[test]
    fn trust_domain_names_are_kept_inline_and_cut_on_a_char_boundary() {
        let long = "ü".repeat(MAX_TRUST_DOMAIN);
        let domain = TrustDomain::new(&long);
        assert_eq!(domain.as_str().len(), MAX_TRUST_DOMAIN);
        assert!(long.starts_with(domain.as_str()));
        let odd = alloc::format!("a{long}");
        let cut = TrustDomain::new(odd);
        assert_eq!(
            cut.as_str().len(),
            MAX_TRUST_DOMAIN - 1,
            "no half character"
        );
    }

    #[test]
    fn trust_domains_compare_with_their_names() {
        let core = TrustDomain::core();
        let by_ref = &core;
        assert!(by_ref == "core");
        assert!(core == "core");
        assert!(core != "user");
    }
}
