//! Tenant enforcement: who the tenant is, the guard that inspects SQL, and the injection.

pub mod catalog;
pub mod directory;
pub mod guard;
pub mod identity;
pub mod inject;
pub mod inspect;
