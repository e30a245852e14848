//! `check`: read one domain XML and apply the static rules.

use crate::schema::diagnostic::{sort_diagnostics, Diagnostic, RuleId};
use crate::schema::domain::Domain;
use crate::schema::domain_reader::read_domain;
use crate::schema::rules::check_static;

/// The model (as far as it could be read) and every finding about it.
pub struct Checked {
    pub domain: Domain,
    pub diagnostics: Vec<Diagnostic>,
}

impl Checked {
    pub fn has_errors(&self) -> bool {
        self.diagnostics.iter().any(Diagnostic::is_error)
    }
}

/// Reads `text` and checks R1–R8. XML that is not well-formed gives only
/// the `XML` finding; unreadable values are reported beside the rules.
pub fn check_text(file: &str, text: &str) -> Checked {
    let read = read_domain(file, text);
    let mut diagnostics = read.diagnostics;
    if !diagnostics.iter().any(|d| d.rule == RuleId::Xml) {
        diagnostics.extend(check_static(&read.domain));
    }
    sort_diagnostics(&mut diagnostics);
    Checked {
        domain: read.domain,
        diagnostics,
    }
}
