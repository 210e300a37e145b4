//! Storage identifiers. Objects are named by id alone: there are no paths,
//! no directories and no hierarchy. An id names; it does not authorize —
//! every access also needs an object capability ([`ObjectCap`](crate::cap::ObjectCap)).

pandagen_abi::plain_id!(
    /// An object. Allocated by the store when the object is created and
    /// never reused, across restarts too (creation is durable before the id
    /// is returned).
    ObjectId,
    "obj#"
);

pandagen_abi::plain_id!(
    /// One version of one object. A transaction allocates a version id the
    /// first time it modifies an object; if the transaction commits, that id
    /// names the object's new version. Committed version ids are unique and,
    /// per object, increase in commit order. An id handed out by a
    /// transaction that never committed names nothing and may be handed out
    /// again after a restart.
    VersionId,
    "ver#"
);

pandagen_abi::plain_id!(
    /// A transaction. Meaningful only while the transaction is active in the
    /// storage service instance that began it.
    TxId,
    "tx#"
);

pandagen_abi::plain_id!(
    /// The position of a commit in the store's total commit order. A
    /// transaction's snapshot is the last commit it can see.
    CommitSeq,
    "commit#"
);

impl CommitSeq {
    /// Before the first commit.
    pub const ZERO: CommitSeq = CommitSeq(0);

    pub const fn next(&self) -> CommitSeq {
        CommitSeq(self.0 + 1)
    }
}
