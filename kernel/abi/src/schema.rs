//! Schema versions and the version window policy.
//!
//! A major version change breaks compatibility; a minor one does not. A
//! service supports its current major version and, if it chooses, a window
//! of older majors down to `min_major` ("current + previous" by default in
//! PandaGen's services). Receivers check the version *before* decoding the
//! payload, and a mismatch is a typed error that says what to do about it.

use core::fmt;
use serde::{Deserialize, Serialize};

use crate::ids::ServiceId;

/// A message schema version.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct SchemaVersion {
    /// Incremented for breaking changes.
    pub major: u32,
    /// Incremented for backward-compatible additions.
    pub minor: u32,
}

impl SchemaVersion {
    pub const fn new(major: u32, minor: u32) -> Self {
        SchemaVersion { major, minor }
    }

    /// Same major version means compatible, whatever the minor versions.
    pub const fn is_compatible_with(&self, other: &SchemaVersion) -> bool {
        self.major == other.major
    }
}

impl fmt::Display for SchemaVersion {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "v{}.{}", self.major, self.minor)
    }
}

/// The outcome of a version check.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Compatibility {
    /// Process the message.
    Compatible,
    /// The sender speaks the current major version but an older minor
    /// version than the service requires (see [`VersionPolicy::with_min_minor`]):
    /// the sender must upgrade.
    UpgradeRequired,
    /// The major version is outside the supported window: newer than the
    /// service knows, or older than `min_major`.
    Unsupported,
}

/// Which versions a service accepts.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct VersionPolicy {
    current: SchemaVersion,
    min_major: u32,
    min_minor: u32,
}

impl VersionPolicy {
    /// A policy accepting exactly the current major version (any minor).
    pub const fn current(major: u32, minor: u32) -> Self {
        VersionPolicy {
            current: SchemaVersion::new(major, minor),
            min_major: major,
            min_minor: 0,
        }
    }

    /// Same as [`VersionPolicy::current`], under the name
    /// docs/interfaces.md's version negotiation example uses.
    pub const fn new(major: u32, minor: u32) -> Self {
        Self::current(major, minor)
    }

    /// Also accept older majors down to `min_major` (clamped to the current
    /// major: a window cannot reach into the future).
    pub const fn with_min_major(mut self, min_major: u32) -> Self {
        self.min_major = if min_major > self.current.major {
            self.current.major
        } else {
            min_major
        };
        self
    }

    /// Require at least this minor version within the current major.
    pub const fn with_min_minor(mut self, min_minor: u32) -> Self {
        self.min_minor = min_minor;
        self
    }

    pub const fn current_version(&self) -> SchemaVersion {
        self.current
    }

    /// The oldest and newest version accepted. The newest is reported as the
    /// current version, although any newer minor of it is accepted too.
    pub const fn supported_range(&self) -> (SchemaVersion, SchemaVersion) {
        let oldest = if self.min_major == self.current.major {
            SchemaVersion::new(self.min_major, self.min_minor)
        } else {
            SchemaVersion::new(self.min_major, 0)
        };
        (oldest, self.current)
    }

    pub const fn check_compatibility(&self, incoming: &SchemaVersion) -> Compatibility {
        if incoming.major > self.current.major || incoming.major < self.min_major {
            Compatibility::Unsupported
        } else if incoming.major == self.current.major && incoming.minor < self.min_minor {
            Compatibility::UpgradeRequired
        } else {
            Compatibility::Compatible
        }
    }

    /// The oldest version of the current major this policy accepts.
    pub const fn oldest_current(&self) -> SchemaVersion {
        SchemaVersion::new(self.current.major, self.min_minor)
    }

    /// The error telling a sender of `received` (the current major, but an
    /// older minor than [`VersionPolicy::with_min_minor`] requires) which
    /// version `service` needs: the current major at its minimum minor. (The
    /// oldest version of the whole window may be an older major, which a
    /// sender of the current major has no reason to go back to.)
    pub const fn upgrade_required(
        &self,
        service: ServiceId,
        received: SchemaVersion,
    ) -> SchemaMismatchError {
        SchemaMismatchError::upgrade_required(service, self.oldest_current(), received)
    }

    /// The error telling a sender of `received` that `service` (with this
    /// policy) supports only its range.
    pub const fn unsupported(
        &self,
        service: ServiceId,
        received: SchemaVersion,
    ) -> SchemaMismatchError {
        SchemaMismatchError::unsupported(service, self.supported_range(), received)
    }

    /// Check `incoming` for `service`, turning a mismatch into the error the
    /// service sends back.
    pub fn check(
        &self,
        service: ServiceId,
        incoming: SchemaVersion,
    ) -> Result<(), SchemaMismatchError> {
        match self.check_compatibility(&incoming) {
            Compatibility::Compatible => Ok(()),
            Compatibility::UpgradeRequired => Err(self.upgrade_required(service, incoming)),
            Compatibility::Unsupported => Err(self.unsupported(service, incoming)),
        }
    }
}

/// What the sender of a rejected message should do.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Remediation {
    /// The sender is too old: upgrade it.
    UpgradeSender,
    /// The sender is newer than the service: downgrade the sender, or wait
    /// for the service to be updated.
    DowngradeSenderOrUpdateService,
}

/// A version mismatch, as returned to the sender. It names the service, the
/// versions it accepts and the version received.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum SchemaMismatchError {
    /// The sender uses too old a version.
    UpgradeRequired {
        service: ServiceId,
        expected_min: SchemaVersion,
        received: SchemaVersion,
    },
    /// The version is outside the supported window (too new or too old).
    Unsupported {
        service: ServiceId,
        supported_range: (SchemaVersion, SchemaVersion),
        received: SchemaVersion,
    },
}

impl SchemaMismatchError {
    /// The sender must upgrade to at least `expected_min`.
    pub const fn upgrade_required(
        service: ServiceId,
        expected_min: SchemaVersion,
        received: SchemaVersion,
    ) -> Self {
        SchemaMismatchError::UpgradeRequired {
            service,
            expected_min,
            received,
        }
    }

    /// `received` is outside `supported_range` (too new or too old).
    pub const fn unsupported(
        service: ServiceId,
        supported_range: (SchemaVersion, SchemaVersion),
        received: SchemaVersion,
    ) -> Self {
        SchemaMismatchError::Unsupported {
            service,
            supported_range,
            received,
        }
    }

    pub const fn service(&self) -> ServiceId {
        match self {
            SchemaMismatchError::UpgradeRequired { service, .. }
            | SchemaMismatchError::Unsupported { service, .. } => *service,
        }
    }

    pub const fn received(&self) -> SchemaVersion {
        match self {
            SchemaMismatchError::UpgradeRequired { received, .. }
            | SchemaMismatchError::Unsupported { received, .. } => *received,
        }
    }

    pub const fn remediation(&self) -> Remediation {
        match self {
            SchemaMismatchError::UpgradeRequired { .. } => Remediation::UpgradeSender,
            SchemaMismatchError::Unsupported {
                supported_range,
                received,
                ..
            } => {
                if received.major < supported_range.0.major {
                    Remediation::UpgradeSender
                } else {
                    Remediation::DowngradeSenderOrUpdateService
                }
            }
        }
    }
}

impl fmt::Display for SchemaMismatchError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SchemaMismatchError::UpgradeRequired { service, expected_min, received } => write!(
                f,
                "{service} requires schema {expected_min} or newer, received {received}: upgrade the sender"
            ),
            SchemaMismatchError::Unsupported { service, supported_range, received } => {
                let advice = match self.remediation() {
                    Remediation::UpgradeSender => "upgrade the sender",
                    Remediation::DowngradeSenderOrUpdateService => {
                        "downgrade the sender or update the service"
                    }
                };
                write!(
                    f,
                    "{service} supports schema {} to {}, received {received}: {advice}",
                    supported_range.0, supported_range.1
                )
            }
        }
    }
}

impl core::error::Error for SchemaMismatchError {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn same_major_is_compatible_whatever_the_minor() {
        assert!(SchemaVersion::new(1, 0).is_compatible_with(&SchemaVersion::new(1, 1)));
        assert!(!SchemaVersion::new(1, 9).is_compatible_with(&SchemaVersion::new(2, 0)));
    }

    #[test]
    fn test_reject_too_old_version() {
        let policy = VersionPolicy::current(3, 0).with_min_major(2);
        let old_version = SchemaVersion::new(1, 9);
        assert_eq!(
            policy.check_compatibility(&old_version),
            Compatibility::Unsupported
        );
    }

    #[test]
    fn previous_major_inside_the_window_is_accepted() {
        let policy = VersionPolicy::current(3, 0).with_min_major(2);
        assert_eq!(
            policy.check_compatibility(&SchemaVersion::new(2, 7)),
            Compatibility::Compatible
        );
        assert_eq!(
            policy.check_compatibility(&SchemaVersion::new(3, 4)),
            Compatibility::Compatible
        );
    }

    #[test]
    fn newer_major_is_unsupported_and_says_so() {
        let service = ServiceId::from_raw(9);
        let policy = VersionPolicy::current(1, 2);
        let err = policy.check(service, SchemaVersion::new(2, 0)).unwrap_err();
        assert_eq!(err.service(), service);
        assert_eq!(err.received(), SchemaVersion::new(2, 0));
        assert_eq!(
            err.remediation(),
            Remediation::DowngradeSenderOrUpdateService
        );
        match err {
            SchemaMismatchError::Unsupported {
                supported_range, ..
            } => {
                assert_eq!(
                    supported_range,
                    (SchemaVersion::new(1, 0), SchemaVersion::new(1, 2))
                );
            }
            other => panic!("expected Unsupported, got {other:?}"),
        }
    }

    #[test]
    fn older_minor_than_required_asks_for_an_upgrade() {
        let service = ServiceId::from_raw(4);
        let policy = VersionPolicy::current(2, 3).with_min_minor(2);
        assert_eq!(
            policy.check_compatibility(&SchemaVersion::new(2, 1)),
            Compatibility::UpgradeRequired
        );
        let err = policy.check(service, SchemaVersion::new(2, 1)).unwrap_err();
        assert_eq!(
            err,
            SchemaMismatchError::UpgradeRequired {
                service,
                expected_min: SchemaVersion::new(2, 2),
                received: SchemaVersion::new(2, 1),
            }
        );
        assert_eq!(err.remediation(), Remediation::UpgradeSender);
    }

    #[test]
    fn window_cannot_reach_into_the_future() {
        let policy = VersionPolicy::current(2, 0).with_min_major(5);
        assert_eq!(
            policy.check_compatibility(&SchemaVersion::new(2, 0)),
            Compatibility::Compatible
        );
        assert_eq!(
            policy.check_compatibility(&SchemaVersion::new(3, 0)),
            Compatibility::Unsupported
        );
    }
}
