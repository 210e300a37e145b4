//! The command language: one command per line, words separated by spaces.
//! [`parse`] turns a line into a [`Command`] or a [`ParseError`] whose
//! `Display` tells the operator what to type instead.

use alloc::string::{String, ToString};
use core::fmt;

use pandagen_abi::TaskId;

/// Entries `audit` shows when no count is given.
pub const DEFAULT_AUDIT_ENTRIES: u16 = 10;

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Command {
    /// A blank line.
    Nothing,
    Help,
    Ps,
    Devices,
    /// The capabilities of a task (the console's own when `None`).
    Caps(Option<TaskId>),
    Audit(u16),
    Services,
    Start(String),
    Stop(String),
    Restart(String),
    Crash(String),
    Store(StoreCommand),
    Pipeline(PipelineCommand),
    Uptime,
    Mem,
    Shutdown,
    Reboot,
}

/// `store ...`: the console's own map and log objects in the storage
/// service.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum StoreCommand {
    Put { key: String, value: String },
    Get { key: String },
    LogAppend { text: String },
    LogRead,
    Versions(StoreObject),
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StoreObject {
    Map,
    Log,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum PipelineCommand {
    List,
    Run(String),
}

/// Why a line is not a command.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ParseError {
    /// The first word is not a command; maybe a near miss.
    Unknown {
        word: String,
        suggestion: Option<&'static str>,
    },
    /// The command exists but its arguments are wrong: its usage line.
    Usage(&'static str),
    /// A number argument that is not a number (or out of range).
    BadNumber { what: &'static str, text: String },
}

impl fmt::Display for ParseError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ParseError::Unknown {
                word,
                suggestion: Some(s),
            } => write!(
                f,
                "unknown command `{word}`; did you mean `{s}`? (type `help` for the list)"
            ),
            ParseError::Unknown {
                word,
                suggestion: None,
            } => write!(f, "unknown command `{word}` (type `help` for the list)"),
            ParseError::Usage(usage) => write!(f, "usage: {usage}"),
            ParseError::BadNumber { what, text } => {
                write!(f, "`{text}` is not a valid {what}")
            }
        }
    }
}

/// Every command word with its usage and what it does, for `help` and for
/// suggestions.
pub const COMMANDS: &[(&str, &str, &str)] = &[
    ("help", "help", "this list"),
    (
        "ps",
        "ps",
        "tasks and services: state, restarts, trust domain",
    ),
    (
        "caps",
        "caps [task]",
        "capabilities a task holds (default: the console)",
    ),
    (
        "audit",
        "audit [n]",
        "the newest n capability audit entries (default 10)",
    ),
    ("services", "services", "the kernel's service registry"),
    (
        "devices",
        "devices",
        "PCI devices, their drivers, and where storage keeps its journal",
    ),
    (
        "start",
        "start <service>",
        "start a stopped or failed service",
    ),
    ("stop", "stop <service>", "stop a service"),
    ("restart", "restart <service>", "stop and start a service"),
    (
        "crash",
        "crash <service>",
        "make a service fail, to watch supervision",
    ),
    (
        "store",
        "store put <key> <value> | get <key> | log append <text> | log read | versions [map|log]",
        "the storage service",
    ),
    (
        "pipeline",
        "pipeline list | run <demo>",
        "run a demo pipeline",
    ),
    ("uptime", "uptime", "time since boot"),
    ("mem", "mem", "frame and heap usage"),
    ("shutdown", "shutdown", "power off (ACPI)"),
    ("reboot", "reboot", "reset the machine"),
];

fn usage(word: &str) -> &'static str {
    COMMANDS
        .iter()
        .find(|(w, _, _)| *w == word)
        .map(|(_, u, _)| *u)
        .unwrap_or("help")
}

/// Split off the first word of `rest`.
fn word<'a>(rest: &mut &'a str) -> Option<&'a str> {
    let text = rest.trim_start();
    if text.is_empty() {
        *rest = text;
        return None;
    }
    let end = text.find(char::is_whitespace).unwrap_or(text.len());
    let (w, tail) = text.split_at(end);
    *rest = tail;
    Some(w)
}

/// The remaining text, or the usage error if there is none.
fn text_arg(rest: &str, command: &str) -> Result<String, ParseError> {
    let text = rest.trim();
    if text.is_empty() {
        Err(ParseError::Usage(usage(command)))
    } else {
        Ok(text.to_string())
    }
}

fn no_more(rest: &str, command: &str) -> Result<(), ParseError> {
    if rest.trim().is_empty() {
        Ok(())
    } else {
        Err(ParseError::Usage(usage(command)))
    }
}

fn service_arg(rest: &mut &str, command: &str) -> Result<String, ParseError> {
    let name = word(rest).ok_or(ParseError::Usage(usage(command)))?;
    no_more(rest, command)?;
    Ok(name.to_string())
}

pub fn parse(line: &str) -> Result<Command, ParseError> {
    let mut rest = line;
    let Some(command) = word(&mut rest) else {
        return Ok(Command::Nothing);
    };
    let simple = |c: Command, rest: &str| no_more(rest, command).map(|()| c);
    match command {
        "help" | "?" => Ok(Command::Help),
        "ps" => simple(Command::Ps, rest),
        "devices" => simple(Command::Devices, rest),
        "services" => simple(Command::Services, rest),
        "uptime" => simple(Command::Uptime, rest),
        "mem" => simple(Command::Mem, rest),
        "shutdown" => simple(Command::Shutdown, rest),
        "reboot" => simple(Command::Reboot, rest),
        "caps" => {
            let task = match word(&mut rest) {
                None => None,
                Some(text) => Some(TaskId::from_raw(text.parse().map_err(|_| {
                    ParseError::BadNumber {
                        what: "task id",
                        text: text.to_string(),
                    }
                })?)),
            };
            no_more(rest, command)?;
            Ok(Command::Caps(task))
        }
        "audit" => {
            let count = match word(&mut rest) {
                None => DEFAULT_AUDIT_ENTRIES,
                Some(text) => match text.parse::<u16>() {
                    Ok(n) if n > 0 => n,
                    _ => {
                        return Err(ParseError::BadNumber {
                            what: "entry count",
                            text: text.to_string(),
                        })
                    }
                },
            };
            no_more(rest, command)?;
            Ok(Command::Audit(count))
        }
        "start" => Ok(Command::Start(service_arg(&mut rest, command)?)),
        "stop" => Ok(Command::Stop(service_arg(&mut rest, command)?)),
        "restart" => Ok(Command::Restart(service_arg(&mut rest, command)?)),
        "crash" => Ok(Command::Crash(service_arg(&mut rest, command)?)),
        "store" => parse_store(rest).map(Command::Store),
        "pipeline" => parse_pipeline(rest).map(Command::Pipeline),
        other => Err(ParseError::Unknown {
            word: other.to_string(),
            suggestion: suggest(other),
        }),
    }
}

fn parse_store(mut rest: &str) -> Result<StoreCommand, ParseError> {
    let bad = ParseError::Usage(usage("store"));
    match word(&mut rest).ok_or(bad.clone())? {
        "put" => {
            let key = word(&mut rest).ok_or(bad.clone())?.to_string();
            let value = text_arg(rest, "store")?;
            Ok(StoreCommand::Put { key, value })
        }
        "get" => {
            let key = word(&mut rest).ok_or(bad.clone())?.to_string();
            no_more(rest, "store")?;
            Ok(StoreCommand::Get { key })
        }
        "log" => match word(&mut rest).ok_or(bad.clone())? {
            "append" => Ok(StoreCommand::LogAppend {
                text: text_arg(rest, "store")?,
            }),
            "read" => no_more(rest, "store").map(|()| StoreCommand::LogRead),
            _ => Err(bad),
        },
        "versions" => {
            let object = match word(&mut rest) {
                None | Some("map") => StoreObject::Map,
                Some("log") => StoreObject::Log,
                Some(_) => return Err(bad),
            };
            no_more(rest, "store")?;
            Ok(StoreCommand::Versions(object))
        }
        _ => Err(bad),
    }
}

fn parse_pipeline(mut rest: &str) -> Result<PipelineCommand, ParseError> {
    let bad = ParseError::Usage(usage("pipeline"));
    match word(&mut rest).ok_or(bad.clone())? {
        "list" => no_more(rest, "pipeline").map(|()| PipelineCommand::List),
        "run" => {
            let demo = word(&mut rest).ok_or(bad.clone())?.to_string();
            no_more(rest, "pipeline")?;
            Ok(PipelineCommand::Run(demo))
        }
        _ => Err(bad),
    }
}

/// The command closest to a mistyped word: a prefix of it, or one edit
/// away (two for longer words).
fn suggest(word: &str) -> Option<&'static str> {
    let names = COMMANDS.iter().map(|(w, _, _)| *w);
    if word.len() >= 2 {
        if let Some(name) = names.clone().find(|n| n.starts_with(word)) {
            return Some(name);
        }
    }
    let limit = if word.len() > 4 { 2 } else { 1 };
    names
        .map(|n| (distance(word, n), n))
        .filter(|(d, _)| *d <= limit)
        .min_by_key(|(d, _)| *d)
        .map(|(_, n)| n)
}

/// Levenshtein distance over bytes (command words are ASCII).
fn distance(a: &str, b: &str) -> usize {
    let b = b.as_bytes();
    let mut row: alloc::vec::Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.bytes().enumerate() {
        let mut diagonal = row[0];
        row[0] = i + 1;
        for (j, &cb) in b.iter().enumerate() {
            let substitute = diagonal + usize::from(ca != cb);
            diagonal = row[j + 1];
            row[j + 1] = substitute.min(row[j] + 1).min(row[j + 1] + 1);
        }
    }
    row[b.len()]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn simple_commands_parse_and_reject_extra_words() {
        assert_eq!(parse("  ps "), Ok(Command::Ps));
        assert_eq!(parse(""), Ok(Command::Nothing));
        assert_eq!(parse("help"), Ok(Command::Help));
        assert_eq!(parse("shutdown"), Ok(Command::Shutdown));
        assert_eq!(parse("reboot"), Ok(Command::Reboot));
        assert_eq!(parse("ps aux"), Err(ParseError::Usage("ps")));
    }

    #[test]
    fn optional_numbers() {
        assert_eq!(parse("caps"), Ok(Command::Caps(None)));
        assert_eq!(
            parse("caps 3"),
            Ok(Command::Caps(Some(TaskId::from_raw(3))))
        );
        assert_eq!(parse("audit"), Ok(Command::Audit(DEFAULT_AUDIT_ENTRIES)));
        assert_eq!(parse("audit 5"), Ok(Command::Audit(5)));
        assert!(matches!(
            parse("audit many"),
            Err(ParseError::BadNumber { .. })
        ));
        assert!(matches!(
            parse("audit 0"),
            Err(ParseError::BadNumber { .. })
        ));
        assert!(matches!(parse("caps x"), Err(ParseError::BadNumber { .. })));
    }

    #[test]
    fn service_commands_need_exactly_one_name() {
        assert_eq!(
            parse("restart storage"),
            Ok(Command::Restart("storage".into()))
        );
        assert_eq!(
            parse("crash transformer"),
            Ok(Command::Crash("transformer".into()))
        );
        assert_eq!(parse("stop"), Err(ParseError::Usage("stop <service>")));
        assert_eq!(
            parse("start a b"),
            Err(ParseError::Usage("start <service>"))
        );
    }

    #[test]
    fn store_subcommands_keep_the_rest_of_the_line_as_text() {
        assert_eq!(
            parse("store put greeting hello  panda world"),
            Ok(Command::Store(StoreCommand::Put {
                key: "greeting".into(),
                value: "hello  panda world".into()
            }))
        );
        assert_eq!(
            parse("store get greeting"),
            Ok(Command::Store(StoreCommand::Get {
                key: "greeting".into()
            }))
        );
        assert_eq!(
            parse("store log append booted ok"),
            Ok(Command::Store(StoreCommand::LogAppend {
                text: "booted ok".into()
            }))
        );
        assert_eq!(
            parse("store log read"),
            Ok(Command::Store(StoreCommand::LogRead))
        );
        assert_eq!(
            parse("store versions"),
            Ok(Command::Store(StoreCommand::Versions(StoreObject::Map)))
        );
        assert_eq!(
            parse("store versions log"),
            Ok(Command::Store(StoreCommand::Versions(StoreObject::Log)))
        );
        for bad in [
            "store",
            "store put k",
            "store log",
            "store versions blob",
            "store frob",
        ] {
            assert!(matches!(parse(bad), Err(ParseError::Usage(_))), "{bad}");
        }
    }

    #[test]
    fn pipeline_subcommands() {
        assert_eq!(
            parse("pipeline run happy"),
            Ok(Command::Pipeline(PipelineCommand::Run("happy".into())))
        );
        assert_eq!(
            parse("pipeline list"),
            Ok(Command::Pipeline(PipelineCommand::List))
        );
        assert!(matches!(parse("pipeline run"), Err(ParseError::Usage(_))));
    }

    #[test]
    fn unknown_commands_get_a_suggestion_when_one_is_close() {
        let err = parse("sevrices").unwrap_err();
        assert_eq!(
            err,
            ParseError::Unknown {
                word: "sevrices".into(),
                suggestion: Some("services")
            }
        );
        assert_eq!(
            err.to_string(),
            "unknown command `sevrices`; did you mean `services`? (type `help` for the list)"
        );
        assert!(matches!(
            parse("upt"),
            Err(ParseError::Unknown {
                suggestion: Some("uptime"),
                ..
            })
        ));
        assert!(matches!(
            parse("pss"),
            Err(ParseError::Unknown {
                suggestion: Some("ps"),
                ..
            })
        ));
        assert_eq!(
            parse("xyzzy").unwrap_err().to_string(),
            "unknown command `xyzzy` (type `help` for the list)"
        );
    }

    #[test]
    fn every_command_word_is_in_the_help_table_and_parses() {
        for (word, _, _) in COMMANDS {
            assert!(
                !matches!(parse(word), Err(ParseError::Unknown { .. })),
                "{word}"
            );
        }
    }
}
