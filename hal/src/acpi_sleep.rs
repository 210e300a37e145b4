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
//! stable. `\_S5` is, on nearly every firmware, a static
//! `Name(_S5, Package() {a, b, ...})`, which is a few fixed opcodes; a few
//! define it as a method that returns such a package,
//! `Method(_S5, 0) { Return (Package() {a, b, ...}) }`. This module
//! decodes exactly those two forms, the method by evaluating its one
//! statement (bounded: no loop, no call, no namespace), and reports
//! anything else (a method with arguments, or whose first statement is not
//! `Return` of a constant package: a condition, a store, a call) as
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
    /// `_S5` is there but not a package of integer constants, nor a
    /// method returning one (see the module's documentation), or a value
    /// does not fit in 3 bits.
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
const METHOD_OP: u8 = 0x14;
const RETURN_OP: u8 = 0xa4;
/// The low three bits of a method's flags: how many arguments it takes.
const METHOD_ARG_COUNT: u8 = 0x07;

/// The S5 sleep types in one AML stream (a table's body, after its
/// header).
pub fn find_s5(aml: &[u8]) -> Result<SleepTypes, S5Error> {
    let mut first_error = S5Error::NotFound;
    let mut at = 0;
    while let Some(offset) = find(&aml[at..], b"_S5_") {
        let name = at + offset;
        at = name + 4;
        // The name's definition, if this is one: a `Name` or a `Method`
        // (a reference to `_S5_` elsewhere is neither, and is skipped).
        let prefix = if name > 0 && aml[name - 1] == ROOT_CHAR {
            name - 1
        } else {
            name
        };
        let mut outcomes = [None, None];
        if prefix > 0 && aml[prefix - 1] == NAME_OP {
            outcomes[0] = Some(package(&aml[at..]));
        }
        if let Some(end) = method_end(aml, prefix, at) {
            outcomes[1] = Some(method(&aml[at..end]));
        }
        for outcome in outcomes.into_iter().flatten() {
            match outcome {
                Ok(types) => return Ok(types),
                Err(e) if first_error == S5Error::NotFound => first_error = e,
                Err(_) => {}
            }
        }
    }
    Err(first_error)
}

/// If a `MethodOp PkgLength` ends right at `prefix` (where the method's
/// name starts): where the method ends, if that is past the name's end
/// `after_name` and inside `aml`.
fn method_end(aml: &[u8], prefix: usize, after_name: usize) -> Option<usize> {
    (1..=4).find_map(|size| {
        let op = prefix.checked_sub(1 + size)?;
        if aml[op] != METHOD_OP {
            return None;
        }
        let (length, used) = pkg_length(&aml[op + 1..prefix]).ok()?;
        let end = op + 1 + length;
        (used == size && end > after_name && end <= aml.len()).then_some(end)
    })
}

/// A method's flags and body, after its name: no arguments, and a first
/// statement `Return (Package () {...})` of constants.
fn method(body: &[u8]) -> Result<SleepTypes, S5Error> {
    let (&flags, statements) = body.split_first().ok_or(S5Error::Truncated)?;
    if flags & METHOD_ARG_COUNT != 0 {
        return Err(S5Error::Unsupported);
    }
    match statements.split_first() {
        Some((&RETURN_OP, value)) => package(value),
        Some(_) => Err(S5Error::Unsupported),
        None => Err(S5Error::Truncated),
    }
}

/// A `PkgLength` at the start of `bytes`: the length it encodes (which
/// counts its own bytes) and how many bytes it takes (1 to 4).
fn pkg_length(bytes: &[u8]) -> Result<(usize, usize), S5Error> {
    let lead = *bytes.first().ok_or(S5Error::Truncated)?;
    let extra = usize::from(lead >> 6);
    let mut length = usize::from(if extra == 0 { lead & 0x3f } else { lead & 0x0f });
    for i in 0..extra {
        let b = *bytes.get(1 + i).ok_or(S5Error::Truncated)?;
        length |= usize::from(b) << (4 + 8 * i);
    }
    Ok((length, 1 + extra))
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
    let (length, used) = pkg_length(&bytes[1..])?;
    cursor.at += used;
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

    /// `Method (_S5, 0, NotSerialized) { Return (Package (0x04) { 0x07,
    /// Zero, Zero, Zero }) }`, as iasl compiles it.
    const METHOD_FORM: [u8; 16] = [
        METHOD_OP,
        0x0f,
        b'_',
        b'S',
        b'5',
        b'_',
        0x00,
        RETURN_OP,
        PACKAGE_OP,
        0x07,
        0x04,
        BYTE_PREFIX,
        0x07,
        ZERO_OP,
        ZERO_OP,
        ZERO_OP,
    ];

    #[test]
    fn a_method_returning_a_constant_package_is_evaluated() {
        // Inside a scope, after other code, as in a real DSDT.
        let mut aml = vec![0x10, 0x30, b'\\', 0x70, 0x0a, 0x01, 0x60];
        aml.extend_from_slice(&METHOD_FORM);
        aml.extend_from_slice(&[0x5b, 0x80]);
        assert_eq!(find_s5(&aml), Ok(SleepTypes { a: 7, b: 0 }));
        // Serialized, with a sync level: flags other than the argument
        // count change nothing.
        let mut serialized = METHOD_FORM;
        serialized[6] = 0x08 | 0x30;
        assert_eq!(find_s5(&serialized), Ok(SleepTypes { a: 7, b: 0 }));
        // A root path, with the method's length one byte longer.
        let mut rooted = vec![METHOD_OP, 0x10, ROOT_CHAR];
        rooted.extend_from_slice(&METHOD_FORM[2..]);
        assert_eq!(find_s5(&rooted), Ok(SleepTypes { a: 7, b: 0 }));
        // A two-byte method length (a long method, padded after).
        // Lead byte 0x40: one more length byte, low nibble 0.
        let mut long = vec![METHOD_OP, 0x40, 0x02];
        long.extend_from_slice(&METHOD_FORM[2..]);
        long.resize(1 + 0x20, 0xa3);
        assert_eq!(find_s5(&long), Ok(SleepTypes { a: 7, b: 0 }));
    }

    #[test]
    fn methods_that_need_more_than_a_return_are_refused() {
        // One argument.
        let mut with_argument = METHOD_FORM;
        with_argument[6] = 0x01;
        assert_eq!(find_s5(&with_argument), Err(S5Error::Unsupported));
        // A condition first: If (Arg0) { ... }.
        let mut conditional = METHOD_FORM;
        conditional[7] = 0xa0;
        assert_eq!(find_s5(&conditional), Err(S5Error::Unsupported));
        // Return of a name, not a package.
        let mut named = METHOD_FORM;
        named[8] = b'P';
        assert_eq!(find_s5(&named), Err(S5Error::Unsupported));
        // The package runs past the method's end.
        let mut overlong = METHOD_FORM;
        overlong[1] = 0x0c;
        assert_eq!(find_s5(&overlong), Err(S5Error::Truncated));
        // An empty body.
        let empty = [METHOD_OP, 0x06, b'_', b'S', b'5', b'_', 0x00];
        assert_eq!(find_s5(&empty), Err(S5Error::Truncated));
        // A method length that would end inside its own name is not a
        // method definition: a mere reference.
        let mut not_a_method = METHOD_FORM;
        not_a_method[1] = 0x03;
        assert_eq!(find_s5(&not_a_method), Err(S5Error::NotFound));
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
