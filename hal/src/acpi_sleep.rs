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
//! stable. `\_S5` is, on every firmware we know of, a static
//! `Name(_S5, Package() {a, b, ...})`, which is a few fixed opcodes: this
//! module decodes exactly that form and reports anything else as
//! [`S5Error::Unsupported`] rather than guessing.

/// `SLP_TYPa` and `SLP_TYPb` for S5 (3-bit values).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SleepTypes {
    pub a: u8,
    pub b: u8,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum S5Error {
    /// No `Name(_S5, ...)` in this table.
    NotFound,
    /// `_S5` is there but not a package of integer constants (a method,
    /// or an encoding this decoder does not read), or a value does not
    /// fit in 3 bits.
    Unsupported,
    /// The table ends inside the package.
    Truncated,
}

const NAME_OP: u8 = 0x08;
const ROOT_CHAR: u8 = b'\\';
const PACKAGE_OP: u8 = 0x12;
const ZERO_OP: u8 = 0x00;
const ONE_OP: u8 = 0x01;
const BYTE_PREFIX: u8 = 0x0a;
const WORD_PREFIX: u8 = 0x0b;
const DWORD_PREFIX: u8 = 0x0c;
const QWORD_PREFIX: u8 = 0x0e;

/// The S5 sleep types in one AML stream (a table's body, after its
/// header).
pub fn find_s5(aml: &[u8]) -> Result<SleepTypes, S5Error> {
    let mut first_error = S5Error::NotFound;
    let mut at = 0;
    while let Some(offset) = find(&aml[at..], b"_S5_") {
        let name = at + offset;
        at = name + 4;
        let named = match name {
            0 => false,
            1 => aml[0] == NAME_OP,
            _ => {
                aml[name - 1] == NAME_OP || (aml[name - 1] == ROOT_CHAR && aml[name - 2] == NAME_OP)
            }
        };
        if !named {
            // A reference to `_S5_` (or a method by that name), not its
            // definition.
            continue;
        }
        match package(&aml[at..]) {
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

/// `PackageOp PkgLength NumElements a b ...`, right after the name.
fn package(bytes: &[u8]) -> Result<SleepTypes, S5Error> {
    let mut cursor = Cursor { bytes, at: 0 };
    if cursor.byte()? != PACKAGE_OP {
        return Err(S5Error::Unsupported);
    }
    let lead = cursor.byte()?;
    let extra = lead >> 6;
    let mut length = usize::from(if extra == 0 { lead & 0x3f } else { lead & 0x0f });
    for i in 0..extra {
        length |= usize::from(cursor.byte()?) << (4 + 8 * i);
    }
    // The length counts itself (its 1-4 bytes) and the contents.
    let end = 1 + length;
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

impl Cursor<'_> {
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
        // Method (_S5_) ...: not a package.
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
}
