//! What the lab says about an input: a rule id, a severity, a position and
//! a sentence, plus a hint that says what to write instead.

use std::fmt;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// The stable ids of the rules (DESIGN.md, "The rules"), plus two ids for
/// input that cannot be read at all.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum RuleId {
    /// The XML is not well-formed (or is not a domain, devices or device element).
    Xml,
    /// A value cannot be read (a slot of `0x2g`, `managed='maybe'`).
    Value,
    R1,
    R2,
    R3,
    R4,
    R5,
    R6,
    R7,
    R8,
    R9,
    R10,
    R11,
    R12,
    R13,
    /// A hostdev's source address does not exist on the host.
    Host,
}

impl RuleId {
    pub fn as_str(self) -> &'static str {
        match self {
            RuleId::Xml => "XML",
            RuleId::Value => "VALUE",
            RuleId::R1 => "R1",
            RuleId::R2 => "R2",
            RuleId::R3 => "R3",
            RuleId::R4 => "R4",
            RuleId::R5 => "R5",
            RuleId::R6 => "R6",
            RuleId::R7 => "R7",
            RuleId::R8 => "R8",
            RuleId::R9 => "R9",
            RuleId::R10 => "R10",
            RuleId::R11 => "R11",
            RuleId::R12 => "R12",
            RuleId::R13 => "R13",
            RuleId::Host => "HOST",
        }
    }
}

impl RuleId {
    pub const ALL: [RuleId; 16] = [
        RuleId::Xml,
        RuleId::Value,
        RuleId::R1,
        RuleId::R2,
        RuleId::R3,
        RuleId::R4,
        RuleId::R5,
        RuleId::R6,
        RuleId::R7,
        RuleId::R8,
        RuleId::R9,
        RuleId::R10,
        RuleId::R11,
        RuleId::R12,
        RuleId::R13,
        RuleId::Host,
    ];

    /// The id for its text (`R11`, `XML`), as scenario files write it.
    pub fn from_name(name: &str) -> Option<RuleId> {
        RuleId::ALL.into_iter().find(|r| r.as_str() == name)
    }
}

impl<'de> Deserialize<'de> for RuleId {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let name = String::deserialize(d)?;
        RuleId::from_name(&name).ok_or_else(|| {
            serde::de::Error::custom(format!(
                "unknown rule id '{name}'; the ids are R1..R13, XML, VALUE, HOST"
            ))
        })
    }
}

impl fmt::Display for RuleId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl Serialize for RuleId {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    Warning,
    Error,
}

impl fmt::Display for Severity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Severity::Warning => "warning",
            Severity::Error => "error",
        })
    }
}

pub use crate::source::Pos;

/// One finding, ready to print as text or JSON.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Diagnostic {
    pub rule: RuleId,
    pub severity: Severity,
    pub file: String,
    pub line: u32,
    pub column: u32,
    pub message: String,
    pub hint: String,
}

impl Diagnostic {
    pub fn new(
        rule: RuleId,
        severity: Severity,
        file: &str,
        at: Pos,
        message: impl Into<String>,
        hint: impl Into<String>,
    ) -> Self {
        Diagnostic {
            rule,
            severity,
            file: file.to_string(),
            line: at.line,
            column: at.column,
            message: message.into(),
            hint: hint.into(),
        }
    }

    pub fn is_error(&self) -> bool {
        self.severity == Severity::Error
    }
}

impl fmt::Display for Diagnostic {
    /// `FILE:LINE:COL: error[R3]: message`, then the hint on its own line.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}:{}:{}: {}[{}]: {}",
            self.file, self.line, self.column, self.severity, self.rule, self.message
        )?;
        if !self.hint.is_empty() {
            write!(f, "\n  = hint: {}", self.hint)?;
        }
        Ok(())
    }
}

/// The errors one check finds in one file, handed out sorted.
pub struct ErrorList<'a> {
    file: &'a str,
    list: Vec<Diagnostic>,
}

impl<'a> ErrorList<'a> {
    pub fn new(file: &'a str) -> Self {
        ErrorList {
            file,
            list: Vec::new(),
        }
    }

    pub fn push(&mut self, rule: RuleId, at: Pos, message: String, hint: String) {
        self.list.push(Diagnostic::new(
            rule,
            Severity::Error,
            self.file,
            at,
            message,
            hint,
        ));
    }

    pub fn is_empty(&self) -> bool {
        self.list.is_empty()
    }

    pub fn into_sorted(mut self) -> Vec<Diagnostic> {
        sort_diagnostics(&mut self.list);
        self.list
    }

    /// `ok()` when nothing was found, else the errors.
    pub fn or_ok<T>(self, ok: impl FnOnce() -> T) -> Result<T, Vec<Diagnostic>> {
        match self.is_empty() {
            true => Ok(ok()),
            false => Err(self.into_sorted()),
        }
    }
}

/// Sorts findings the way a reader goes through a file.
pub fn sort_diagnostics(list: &mut [Diagnostic]) {
    list.sort_by(|a, b| {
        (&a.file, a.line, a.column, a.rule).cmp(&(&b.file, b.line, b.column, b.rule))
    });
}
