//! Temporary stand-in with the inspector's API until the real module lands.
#![allow(missing_docs, dead_code)]
use std::ops::Range;
pub struct InspectOptions<'a> { pub setting: &'a str, pub tenant_column: &'a str, pub standard_conforming_strings: bool }
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Flags(pub u32);
impl Flags { pub const CONTAINS_SECRET: Flags = Flags(1); pub const NO_TXN_BLOCK: Flags = Flags(2); pub const DISCARD_OR_RESET_ALL: Flags = Flags(4); pub const SQL_PREPARE: Flags = Flags(8); pub const TXN_CONTROL: Flags = Flags(16); pub const LISTEN: Flags = Flags(32); pub fn contains(self, o: Flags) -> bool { self.0 & o.0 == o.0 } }
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
    let t = l.trim_start();
    let mut f = Flags(0);
    if t.starts_with("vacuum") { f = f | Flags::NO_TXN_BLOCK; }
    if t.starts_with("discard all") || t.starts_with("reset all") || t.starts_with("deallocate all") { f = f | Flags::DISCARD_OR_RESET_ALL; }
    if t.starts_with("prepare ") && !t.starts_with("prepare transaction") { f = f | Flags::SQL_PREPARE; }
    Inspection { statements: 1, findings, flags: f }
}
