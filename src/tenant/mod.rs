//! Tenant enforcement: who the tenant is ([`identity`], the slug [`directory`]), the guard that
//! inspects SQL ([`guard`] over [`inspect`], with the [`catalog`] deny-lists), and the injection
//! ([`inject`]).

pub mod catalog;
pub mod directory;
pub mod guard;
pub mod identity;
pub mod inject;
pub mod inspect;
