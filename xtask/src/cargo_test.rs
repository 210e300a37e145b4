//! Reading `cargo test` output: each test binary ends with
//! `test result: ok. 12 passed; 0 failed; 1 ignored; 0 measured; 0 filtered out; ...`.

/// Totals over all `test result:` lines.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Totals {
    pub passed: usize,
    pub failed: usize,
    /// Number of `test result:` lines (one per test binary / doc-test run).
    pub binaries: usize,
}

pub fn parse(output: &str) -> Totals {
    let mut totals = Totals::default();
    for line in output.lines() {
        let Some(rest) = line.trim().strip_prefix("test result: ") else {
            continue;
        };
        let Some((_, counts)) = rest.split_once(". ") else {
            continue;
        };
        totals.binaries += 1;
        for field in counts.split(';') {
            let mut words = field.split_whitespace();
            let (Some(n), Some(what)) = (words.next(), words.next()) else {
                continue;
            };
            let Ok(n) = n.parse::<usize>() else { continue };
            match what {
                "passed" => totals.passed += n,
                "failed" => totals.failed += n,
                _ => {}
            }
        }
    }
    totals
}

/// Names of failed tests (`test foo::bar ... FAILED` lines).
pub fn failed_names(output: &str) -> Vec<String> {
    output
        .lines()
        .filter_map(|l| {
            let l = l.trim();
            l.strip_prefix("test ")?
                .strip_suffix(" ... FAILED")
                .map(str::to_string)
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    const OUTPUT: &str = "\
running 3 tests
test a ... ok
test b ... FAILED
test c ... ok

failures:
    b

test result: FAILED. 2 passed; 1 failed; 0 ignored; 0 measured; 0 filtered out; finished in 0.01s

running 0 tests

test result: ok. 0 passed; 0 failed; 0 ignored; 0 measured; 0 filtered out; finished in 0.00s

   Doc-tests pandagen_abi

running 4 tests
test result: ok. 4 passed; 0 failed; 2 ignored; 0 measured; 0 filtered out; finished in 0.30s
";

    #[test]
    fn sums_all_result_lines() {
        assert_eq!(
            parse(OUTPUT),
            Totals {
                passed: 6,
                failed: 1,
                binaries: 3
            }
        );
    }

    #[test]
    fn finds_failed_test_names() {
        assert_eq!(failed_names(OUTPUT), ["b"]);
    }

    #[test]
    fn no_result_lines_means_nothing_ran() {
        assert_eq!(
            parse("error[E0425]: cannot find value\n"),
            Totals::default()
        );
    }
}
