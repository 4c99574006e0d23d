//! Temporary stand-in with the inspector's API until the real module lands.
#![allow(missing_docs, dead_code)]
use std::ops::Range;
pub struct InspectOptions<'a> { pub setting: &'a str, pub tenant_column: &'a str, pub standard_conforming_strings: bool }
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Flags(pub u32);
impl Flags { pub const CONTAINS_SECRET: Flags = Flags(1); pub fn contains(self, o: Flags) -> bool { self.0 & o.0 == o.0 } }
impl std::ops::BitOr for Flags { type Output = Flags; fn bitor(self, o: Flags) -> Flags { Flags(self.0 | o.0) } }
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Rule { TenantTamper, RoleTamper, RlsTamper, DoBlock, TenantLiteral }
#[derive(Debug, Clone)]
pub struct Finding { pub rule: Rule, pub statement: Range<usize>, pub detail: &'static str, pub value: Option<String> }
pub struct Inspection { pub statements: u32, pub findings: Vec<Finding>, pub flags: Flags }
pub fn inspect(sql: &str, o: &InspectOptions<'_>) -> Inspection {
    let l = sql.to_ascii_lowercase();
    let mut findings = Vec::new();
    let r = 0..sql.len();
    if l.contains(&o.setting.to_ascii_lowercase()) && (l.trim_start().starts_with("set ") || l.contains("set_config")) {
        findings.push(Finding { rule: Rule::TenantTamper, statement: r.clone(), detail: "SET of the tenant setting", value: None });
    } else if l.trim_start().starts_with("set role") { findings.push(Finding { rule: Rule::RoleTamper, statement: r.clone(), detail: "SET ROLE", value: None }); }
    else if l.contains("row_security") { findings.push(Finding { rule: Rule::RlsTamper, statement: r.clone(), detail: "row_security", value: None }); }
    Inspection { statements: 1, findings, flags: Flags(0) }
}
