//! The S5 (soft-off) sleep type, read from the firmware's AML.
//!
//! Powering off through ACPI means writing `SLP_TYPa | SLP_EN` to the PM1a
//! control register (and `SLP_TYPb` to PM1b, if present), where the
//! `SLP_TYP` values are the first two elements of the `\_S5` package in
//! the DSDT (or an SSDT). Everything else comes from the FADT, which the
//! `acpi` crate parses.
//!
//! Why not the `aml` crate: every AML interpreter crate (`aml` 0.16, the
//! one inside `acpi` 6) needs a nightly compiler, and the kernel builds on
//! stable. Firmware writes `\_S5` in one of three shapes, and this module
//! decodes exactly those, with no general interpreter:
//! - a static `Name(_S5, Package() {a, b, ...})` (QEMU, most PCs);
//! - `Method(_S5) { Return (Package() {a, b, ...}) }`;
//! - `Method(_S5) { Return (XS5) }` with `Name(XS5, Package() {...})`
//!   elsewhere in the same table.
//!
//! A method that does anything before its `Return` (tests a condition,
//! stores a value, calls another method) could answer differently at run
//! time, so it is reported as [`S5Error::Unsupported`] rather than
//! guessed at. The decoder reads at most the table it is given, follows at
//! most one name, and never loops on its own output.

/// `SLP_TYPa` and `SLP_TYPb` for S5 (3-bit values).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SleepTypes {
    pub a: u8,
    pub b: u8,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum S5Error {
    /// No `Name(_S5, ...)` or `Method(_S5, ...)` in this table.
    NotFound,
    /// `_S5` is there but not in a shape this decoder reads: a method that
    /// computes its answer, an encoding it does not know, or a value that
    /// does not fit in 3 bits.
    Unsupported,
    /// The table ends inside the definition.
    Truncated,
}

const NAME_OP: u8 = 0x08;
const METHOD_OP: u8 = 0x14;
const RETURN_OP: u8 = 0xa4;
const ROOT_CHAR: u8 = b'\\';
const PACKAGE_OP: u8 = 0x12;
const ZERO_OP: u8 = 0x00;
const ONE_OP: u8 = 0x01;
const BYTE_PREFIX: u8 = 0x0a;
const WORD_PREFIX: u8 = 0x0b;
const DWORD_PREFIX: u8 = 0x0c;
const QWORD_PREFIX: u8 = 0x0e;
const S5_NAME: &[u8; 4] = b"_S5_";
/// The low three bits of a method's flags: how many arguments it takes.
const METHOD_ARG_COUNT: u8 = 0x07;

/// The S5 sleep types in one AML stream (a table's body, after its
/// header).
pub fn find_s5(aml: &[u8]) -> Result<SleepTypes, S5Error> {
    find_definition(aml, S5_NAME, Follow::MethodReturns)
}

/// Whether a definition may be a method (only `_S5` itself may: a name a
/// method returns must be a plain package, so the search ends there).
#[derive(Clone, Copy, PartialEq, Eq)]
enum Follow {
    MethodReturns,
    PackagesOnly,
}

/// The first definition of `name` in `aml` that decodes, or the first
/// error among its definitions (`NotFound` when there are none).
fn find_definition(aml: &[u8], name: &[u8; 4], follow: Follow) -> Result<SleepTypes, S5Error> {
    let mut first_error = S5Error::NotFound;
    let mut at = 0;
    while let Some(offset) = find(&aml[at..], name) {
        let start = at + offset;
        at = start + 4;
        let mut decoded = None;
        if defined_by(aml, start, NAME_OP) {
            decoded = Some(package(&aml[at..]));
        }
        // A method's one-byte length can equal `NameOp` (8), so a failed
        // `Name` reading is tried again as a method.
        if follow == Follow::MethodReturns && !matches!(decoded, Some(Ok(_))) {
            if let Some(end) = method_end(aml, start) {
                decoded = Some(method(aml, at, end));
            }
        }
        let Some(decoded) = decoded else {
            // A reference to the name, not its definition.
            continue;
        };
        match decoded {
            Ok(types) => return Ok(types),
            Err(e) if first_error == S5Error::NotFound => first_error = e,
            Err(_) => {}
        }
    }
    Err(first_error)
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

/// Where the name at `start` begins its path: before a root `\`, if any.
fn path_start(aml: &[u8], start: usize) -> usize {
    if start >= 1 && aml[start - 1] == ROOT_CHAR {
        start - 1
    } else {
        start
    }
}

/// Whether the name at `start` directly follows `opcode` (as in
/// `NameOp NameString`).
fn defined_by(aml: &[u8], start: usize, opcode: u8) -> bool {
    let path = path_start(aml, start);
    path >= 1 && aml[path - 1] == opcode
}

/// If the name at `start` is a method's (`MethodOp PkgLength NameString`),
/// where that method ends (bounded by the table). A `PkgLength` is 1 to 4
/// bytes, and its lead byte says how many, so each candidate is checked
/// against its own encoding.
fn method_end(aml: &[u8], start: usize) -> Option<usize> {
    let path = path_start(aml, start);
    (1..=4).find_map(|size| {
        let length_at = path.checked_sub(size)?;
        if length_at == 0 || aml[length_at - 1] != METHOD_OP {
            return None;
        }
        let mut cursor = Cursor::new(&aml[length_at..path]);
        let length = cursor.pkg_length().ok()?;
        (cursor.at == size).then(|| (length_at + length).min(aml.len()))
    })
}

/// `MethodFlags TermList` from `at` to `end`: decoded only when the whole
/// body is one `Return` of a package or of a named package.
fn method(aml: &[u8], at: usize, end: usize) -> Result<SleepTypes, S5Error> {
    let body = aml.get(at..end).ok_or(S5Error::Truncated)?;
    let mut cursor = Cursor::new(body);
    // A method that takes arguments could answer by them.
    if cursor.byte()? & METHOD_ARG_COUNT != 0 {
        return Err(S5Error::Unsupported);
    }
    if cursor.byte()? != RETURN_OP {
        return Err(S5Error::Unsupported);
    }
    let returned = &body[cursor.at..];
    match returned.first() {
        Some(&PACKAGE_OP) => package(returned),
        Some(_) => {
            let name = returned.strip_prefix(&[ROOT_CHAR]).unwrap_or(returned);
            if !name.first().is_some_and(|&c| is_name_lead(c)) {
                // An integer, a local, a call: not a name of a package.
                return Err(S5Error::Unsupported);
            }
            let name: &[u8; 4] = name
                .get(..4)
                .and_then(|n| n.try_into().ok())
                .ok_or(S5Error::Truncated)?;
            if !is_name_seg(name) || name == S5_NAME {
                return Err(S5Error::Unsupported);
            }
            match find_definition(aml, name, Follow::PackagesOnly) {
                // The method names a package this table does not define
                // (an external reference): not something to guess.
                Err(S5Error::NotFound) => Err(S5Error::Unsupported),
                other => other,
            }
        }
        None => Err(S5Error::Truncated),
    }
}

/// A NameSeg: a lead character `A`-`Z` or `_`, then three of those or
/// digits.
fn is_name_seg(name: &[u8; 4]) -> bool {
    is_name_lead(name[0])
        && name[1..]
            .iter()
            .all(|&c| is_name_lead(c) || c.is_ascii_digit())
}

fn is_name_lead(c: u8) -> bool {
    c.is_ascii_uppercase() || c == b'_'
}

/// `PackageOp PkgLength NumElements a b ...`, right after the name.
fn package(bytes: &[u8]) -> Result<SleepTypes, S5Error> {
    let mut cursor = Cursor::new(bytes);
    if cursor.byte()? != PACKAGE_OP {
        return Err(S5Error::Unsupported);
    }
    // The length counts itself (its 1-4 bytes) and the contents.
    let end = 1 + cursor.pkg_length()?;
    if end > bytes.len() {
        return Err(S5Error::Truncated);
    }
    cursor.bytes = &bytes[..end];
    let elements = cursor.byte()?;
    if elements == 0 {
        return Err(S5Error::Unsupported);
    }
    let a = cursor.integer()?;
    let b = if elements >= 2 { cursor.integer()? } else { a };
    match (u8::try_from(a), u8::try_from(b)) {
        (Ok(a), Ok(b)) if a <= 7 && b <= 7 => Ok(SleepTypes { a, b }),
        _ => Err(S5Error::Unsupported),
    }
}

struct Cursor<'a> {
    bytes: &'a [u8],
    at: usize,
}

impl<'a> Cursor<'a> {
    fn new(bytes: &'a [u8]) -> Self {
        Cursor { bytes, at: 0 }
    }

    fn byte(&mut self) -> Result<u8, S5Error> {
        let b = *self.bytes.get(self.at).ok_or(S5Error::Truncated)?;
        self.at += 1;
        Ok(b)
    }

    fn le(&mut self, n: usize) -> Result<u64, S5Error> {
        let mut value = 0u64;
        for i in 0..n {
            value |= u64::from(self.byte()?) << (8 * i);
        }
        Ok(value)
    }

    /// A `PkgLength`: the lead byte's top two bits count the bytes that
    /// follow; with none, its low six bits are the length, otherwise its
    /// low four bits are the lowest and each following byte adds eight.
    fn pkg_length(&mut self) -> Result<usize, S5Error> {
        let lead = self.byte()?;
        let extra = lead >> 6;
        let mut length = usize::from(if extra == 0 { lead & 0x3f } else { lead & 0x0f });
        for i in 0..extra {
            length |= usize::from(self.byte()?) << (4 + 8 * i);
        }
        Ok(length)
    }

    /// An integer constant: `Zero`, `One`, or a byte/word/dword/qword.
    fn integer(&mut self) -> Result<u64, S5Error> {
        match self.byte()? {
            ZERO_OP => Ok(0),
            ONE_OP => Ok(1),
            BYTE_PREFIX => self.le(1),
            WORD_PREFIX => self.le(2),
            DWORD_PREFIX => self.le(4),
            QWORD_PREFIX => self.le(8),
            _ => Err(S5Error::Unsupported),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn qemu_form_with_zero_elements_as_zero_ops() {
        // QEMU's DSDT: Name (_S5, Package (0x04) { Zero, Zero, Zero, Zero })
        let aml = [
            0x10, 0x20, NAME_OP, b'_', b'S', b'5', b'_', PACKAGE_OP, 0x06, 0x04, 0, 0, 0, 0,
        ];
        assert_eq!(find_s5(&aml), Ok(SleepTypes { a: 0, b: 0 }));
    }

    #[test]
    fn byte_prefixed_values_and_a_root_path() {
        // Name (\_S5, Package (0x02) { 0x07, 0x05 })
        let aml = [
            NAME_OP,
            ROOT_CHAR,
            b'_',
            b'S',
            b'5',
            b'_',
            PACKAGE_OP,
            0x06,
            0x02,
            BYTE_PREFIX,
            7,
            BYTE_PREFIX,
            5,
        ];
        assert_eq!(find_s5(&aml), Ok(SleepTypes { a: 7, b: 5 }));
    }

    #[test]
    fn a_two_byte_package_length_is_read() {
        // PkgLength 0x41 0x00: two bytes, length 1 | 0 << 4... made long by padding.
        let mut aml = vec![
            NAME_OP,
            b'_',
            b'S',
            b'5',
            b'_',
            PACKAGE_OP,
            0x40 | 0x0c,
            0x00,
        ];
        aml.extend_from_slice(&[0x02, BYTE_PREFIX, 5, ONE_OP]);
        aml.extend_from_slice(&[0; 6]);
        assert_eq!(find_s5(&aml), Ok(SleepTypes { a: 5, b: 1 }));
    }

    #[test]
    fn references_are_skipped_for_the_definition() {
        // A method body mentioning _S5_ first, then the definition.
        let aml = [
            0x70,
            b'_',
            b'S',
            b'5',
            b'_',
            0x60,
            NAME_OP,
            b'_',
            b'S',
            b'5',
            b'_',
            PACKAGE_OP,
            0x04,
            0x01,
            BYTE_PREFIX,
            3,
        ];
        assert_eq!(find_s5(&aml), Ok(SleepTypes { a: 3, b: 3 }));
    }

    #[test]
    fn missing_method_and_truncated_forms_are_errors() {
        assert_eq!(find_s5(b"no sleep states here"), Err(S5Error::NotFound));
        // Name (_S5_, <a method opcode>): not a package.
        let method = [NAME_OP, b'_', b'S', b'5', b'_', 0x14, 0x03, 0x00];
        assert_eq!(find_s5(&method), Err(S5Error::Unsupported));
        let truncated = [
            NAME_OP, b'_', b'S', b'5', b'_', PACKAGE_OP, 0x06, 0x02, 0x00,
        ];
        assert_eq!(find_s5(&truncated), Err(S5Error::Truncated));
        // SLP_TYP is three bits.
        let wide = [
            NAME_OP,
            b'_',
            b'S',
            b'5',
            b'_',
            PACKAGE_OP,
            0x05,
            0x02,
            BYTE_PREFIX,
            9,
            0,
        ];
        assert_eq!(find_s5(&wide), Err(S5Error::Unsupported));
    }
    /// `Method (_S5, 0) { Return (Package (0x04) { 0x05, 0x05, 0, 0 }) }`
    fn method_returning_a_package() -> Vec<u8> {
        let package = [PACKAGE_OP, 0x08, 0x04, BYTE_PREFIX, 5, BYTE_PREFIX, 5, 0, 0];
        let mut aml = vec![METHOD_OP, 0x10, b'_', b'S', b'5', b'_', 0x00, RETURN_OP];
        aml.extend_from_slice(&package);
        assert_eq!(
            aml.len() - 1,
            0x10,
            "the method's length counts itself and its body"
        );
        aml
    }

    #[test]
    fn a_method_returning_a_package_is_read() {
        let mut aml = vec![0x10, 0x30, b'_', b'S', b'B', b'_'];
        aml.extend(method_returning_a_package());
        assert_eq!(find_s5(&aml), Ok(SleepTypes { a: 5, b: 5 }));
    }

    #[test]
    fn a_method_with_a_root_path_is_read() {
        let mut aml = method_returning_a_package();
        aml.insert(2, ROOT_CHAR);
        aml[1] += 1;
        assert_eq!(find_s5(&aml), Ok(SleepTypes { a: 5, b: 5 }));
    }

    #[test]
    fn a_method_returning_a_named_package_follows_the_name() {
        // Method (_S5) { Return (XS5_) }  Name (XS5_, Package (0x02) { 6, 4 })
        let mut aml = vec![METHOD_OP, 0x0b, b'_', b'S', b'5', b'_', 0x00, RETURN_OP];
        aml.extend_from_slice(b"XS5_");
        aml.extend_from_slice(&[NAME_OP, b'X', b'S', b'5', b'_']);
        aml.extend_from_slice(&[PACKAGE_OP, 0x06, 0x02, BYTE_PREFIX, 6, BYTE_PREFIX, 4]);
        assert_eq!(find_s5(&aml), Ok(SleepTypes { a: 6, b: 4 }));
        // The same method when the table does not define the name.
        let external = &aml[..0x0c];
        assert_eq!(find_s5(external), Err(S5Error::Unsupported));
    }

    #[test]
    fn methods_that_compute_their_answer_are_not_guessed() {
        // Method (_S5) { If (...) { ... } Return (...) }
        let mut conditional = method_returning_a_package();
        conditional[7] = 0xa0;
        assert_eq!(find_s5(&conditional), Err(S5Error::Unsupported));
        // Method (_S5) { Return (_S5_) }: no following itself.
        let mut itself = vec![METHOD_OP, 0x0b, b'_', b'S', b'5', b'_', 0x00, RETURN_OP];
        itself.extend_from_slice(b"_S5_");
        assert_eq!(find_s5(&itself), Err(S5Error::Unsupported));
        // A method that takes an argument.
        let mut argument = method_returning_a_package();
        argument[6] = 0x01;
        assert_eq!(find_s5(&argument), Err(S5Error::Unsupported));
        // A returned name that is not a name: an integer, for instance.
        let mut integer = vec![METHOD_OP, 0x09, b'_', b'S', b'5', b'_', 0x00, RETURN_OP];
        integer.extend_from_slice(&[BYTE_PREFIX, 5]);
        assert_eq!(find_s5(&integer), Err(S5Error::Unsupported));
    }

    #[test]
    fn a_method_cut_short_by_the_table_is_truncated() {
        let aml = method_returning_a_package();
        assert_eq!(find_s5(&aml[..aml.len() - 3]), Err(S5Error::Truncated));
        assert_eq!(find_s5(&aml[..8]), Err(S5Error::Truncated));
    }

    #[test]
    fn a_method_of_another_name_is_a_reference() {
        let mut aml = method_returning_a_package();
        aml[2..6].copy_from_slice(b"_S4_");
        aml.extend_from_slice(&[0x70, b'_', b'S', b'5', b'_', 0x60]);
        assert_eq!(find_s5(&aml), Err(S5Error::NotFound));
    }
    #[test]
    fn every_single_byte_change_and_every_cut_is_answered_without_a_panic() {
        // Firmware tables are untrusted input too: every byte of each
        // shape, set to every value, and every prefix, must give an answer.
        let mut named = vec![METHOD_OP, 0x0b, b'_', b'S', b'5', b'_', 0x00, RETURN_OP];
        named.extend_from_slice(b"XS5_");
        named.extend_from_slice(&[NAME_OP, b'X', b'S', b'5', b'_']);
        named.extend_from_slice(&[PACKAGE_OP, 0x45, 0x00, 0x02, ONE_OP, ONE_OP]);
        assert_eq!(find_s5(&named), Ok(SleepTypes { a: 1, b: 1 }));
        for shape in [method_returning_a_package(), named] {
            for cut in 0..=shape.len() {
                let _ = find_s5(&shape[..cut]);
            }
            for at in 0..shape.len() {
                let mut changed = shape.clone();
                for value in 0..=255 {
                    changed[at] = value;
                    let _ = find_s5(&changed);
                }
            }
        }
    }
}
