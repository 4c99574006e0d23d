//! The admin console: `kind = "admin"` users on the virtual database `tenantgate` get
//! PgBouncer's admin commands, with PgBouncer's column names, column types and error wording,
//! so dashboards, exporters and habits carry over.
//!
//! One enum, [`ConsoleCommand`], says what the console understands; [`ConsoleCommand::parse`]
//! reads a query into it and [`ConsoleCommand::execute`] runs it. Each group of commands lives
//! in its own file (STYLE habit 16):
//! - `show`: SHOW DATABASES / USERS / POOLS / CLIENTS / SERVERS / LISTS / MEM / STATE /
//!   CONFIG / VERSION / HELP;
//! - `stats`: SHOW STATS / STATS_TOTALS / STATS_AVERAGES / TOTALS;
//! - `control`: PAUSE, RESUME, SUSPEND, KILL, RECONNECT, WAIT_CLOSE, SHUTDOWN, RELOAD;
//! - `table`: the typed result-set writer they share.
//!
//! Adding a command: a variant here (or in [`Show`]), its word in `parse`, its arm in
//! `execute`, its function in the group's file.

mod control;
mod show;
mod stats;
pub mod table;

use std::sync::Arc;

use bytes::BytesMut;

use crate::protocol::messages::{self, query_text, PgError};
use crate::protocol::stream::StreamError;
use crate::protocol::PqStream;
use crate::shared::Shared;

/// The virtual database name of the console.
pub const DATABASE: &str = "tenantgate";

/// PgBouncer's name for its console database, accepted for admin users too, so exporters and
/// scripts written for PgBouncer connect unchanged (`dbname=pgbouncer`).
pub const PGBOUNCER_DATABASE: &str = "pgbouncer";

/// Whether an admin user asking for `database` gets the console.
pub fn is_console(database: &str) -> bool {
    database == DATABASE || database == PGBOUNCER_DATABASE
}

pub use crate::shared::console::Mode;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Show {
    /// The command list, as a notice.
    Help,
    Version,
    /// Settings: key, value, changeable.
    Config,
    /// One row per database.
    Databases,
    /// One row per configured user.
    Users,
    /// One row per pool (upstream role).
    Pools,
    /// One row per client session.
    Clients,
    /// One row per server connection.
    Servers,
    /// Counts of internal lists.
    Lists,
    /// Memory held.
    Mem,
    /// active / paused / suspended.
    State,
    /// Totals and averages per database.
    Stats,
    /// Totals per database.
    StatsTotals,
    /// Averages per database.
    StatsAverages,
    /// Totals and averages over all databases, one per row.
    Totals,
    /// One row per tenant: clients, waiting, server connections held, transactions.
    Tenants,
}

/// How SHUTDOWN stops.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Shutdown {
    /// At once (PgBouncer's SHUTDOWN).
    Immediate,
    /// After sessions finish their transactions (WAIT_FOR_CLIENTS / WAIT_FOR_SERVERS).
    Drain,
}

/// A console command, parsed. A database argument is the name as the client gives it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ConsoleCommand {
    Show(Show),
    /// Re-read the configuration file.
    Reload,
    /// Hold new work until RESUME; returns once no server connection is in use.
    Pause(Option<String>),
    /// Undo PAUSE, SUSPEND or KILL.
    Resume(Option<String>),
    /// PAUSE for the whole pooler, before an online restart.
    Suspend,
    /// Close every client and server connection of a database and pause it.
    Kill(Option<String>),
    /// Close every server connection once it is released.
    Reconnect(Option<String>),
    /// Wait until the connections RECONNECT retired are closed.
    WaitClose(Option<String>),
    /// Stop the process.
    Shutdown(Shutdown),
}

pub(crate) use crate::error::admin_console as admin_error;

impl ConsoleCommand {
    /// Reads one query: a command word and at most one argument (a word or a double-quoted
    /// name), an optional `;`, case-insensitive, as PgBouncer's console grammar.
    pub fn parse(sql: &str) -> Result<ConsoleCommand, PgError> {
        let syntax = || admin_error(format!("invalid command '{sql}', use SHOW HELP;"));
        let text = sql.trim().trim_end_matches(';').trim();
        let (word, rest) = text
            .split_once(char::is_whitespace)
            .map_or((text, ""), |(w, r)| (w, r.trim()));
        let arg = parse_arg(rest).ok_or_else(syntax)?;
        let cmd = match word.to_ascii_uppercase().as_str() {
            "SHOW" | "SELECT" => {
                let Some(what) = arg else {
                    return Err(syntax());
                };
                ConsoleCommand::Show(match what.to_ascii_uppercase().as_str() {
                    "HELP" => Show::Help,
                    "VERSION" => Show::Version,
                    "CONFIG" => Show::Config,
                    "DATABASES" => Show::Databases,
                    "USERS" => Show::Users,
                    "POOLS" => Show::Pools,
                    "CLIENTS" => Show::Clients,
                    "SERVERS" => Show::Servers,
                    "LISTS" => Show::Lists,
                    "MEM" => Show::Mem,
                    "STATE" => Show::State,
                    "STATS" => Show::Stats,
                    "STATS_TOTALS" => Show::StatsTotals,
                    "STATS_AVERAGES" => Show::StatsAverages,
                    "TOTALS" => Show::Totals,
                    "TENANTS" => Show::Tenants,
                    _ => return Err(syntax()),
                })
            }
            "RELOAD" if arg.is_none() => ConsoleCommand::Reload,
            "SUSPEND" if arg.is_none() => ConsoleCommand::Suspend,
            "PAUSE" => ConsoleCommand::Pause(arg),
            "RESUME" => ConsoleCommand::Resume(arg),
            "KILL" => ConsoleCommand::Kill(arg),
            "RECONNECT" => ConsoleCommand::Reconnect(arg),
            "WAIT_CLOSE" => ConsoleCommand::WaitClose(arg),
            "SHUTDOWN" => ConsoleCommand::Shutdown(match arg.as_deref() {
                None => Shutdown::Immediate,
                Some(a)
                    if a.eq_ignore_ascii_case("WAIT_FOR_CLIENTS")
                        || a.eq_ignore_ascii_case("WAIT_FOR_SERVERS") =>
                {
                    Shutdown::Drain
                }
                Some(_) => return Err(syntax()),
            }),
            _ => return Err(syntax()),
        };
        Ok(cmd)
    }

    /// Runs the command, appending its answer (rows or CommandComplete) to `out`.
    pub async fn execute(self, shared: &Arc<Shared>, out: &mut BytesMut) -> Result<(), PgError> {
        match self {
            ConsoleCommand::Show(s) => {
                match s {
                    Show::Help => show::help(out),
                    Show::Version => show::version(out),
                    Show::Config => show::config(shared, out),
                    Show::Databases => show::databases(shared, out),
                    Show::Users => show::users(shared, out),
                    Show::Pools => show::pools_show(shared, out),
                    Show::Clients => show::clients(shared, out),
                    Show::Servers => show::servers(shared, out),
                    Show::Lists => show::lists(shared, out),
                    Show::Mem => show::mem(shared, out),
                    Show::State => show::state(shared, out),
                    Show::Stats => stats::stats(shared, out),
                    Show::StatsTotals => stats::totals_per_database(shared, out),
                    Show::StatsAverages => stats::averages_per_database(shared, out),
                    Show::Totals => stats::totals(shared, out),
                    Show::Tenants => crate::admin::tenants::show(shared, out),
                }
                Ok(())
            }
            ConsoleCommand::Reload => control::reload(shared, out).await,
            ConsoleCommand::Pause(db) => control::pause(shared, db.as_deref(), out).await,
            ConsoleCommand::Resume(db) => control::resume(shared, db.as_deref(), out),
            ConsoleCommand::Suspend => control::suspend(shared, out).await,
            ConsoleCommand::Kill(db) => control::kill(shared, db.as_deref(), out),
            ConsoleCommand::Reconnect(db) => control::reconnect(shared, db.as_deref(), out),
            ConsoleCommand::WaitClose(db) => control::wait_close(shared, db.as_deref(), out).await,
            ConsoleCommand::Shutdown(how) => control::shutdown(shared, how, out),
        }
    }
}

/// The optional argument: empty, one word, or one double-quoted name (`""` escapes `"`).
/// None when there is more than that.
fn parse_arg(rest: &str) -> Option<Option<String>> {
    if rest.is_empty() {
        return Some(None);
    }
    if let Some(inner) = rest.strip_prefix('"').and_then(|r| r.strip_suffix('"')) {
        if inner.replace("\"\"", "").contains('"') {
            return None;
        }
        return Some(Some(inner.replace("\"\"", "\"")));
    }
    if rest.chars().all(|c| c.is_alphanumeric() || c == '_') {
        return Some(Some(rest.to_owned()));
    }
    None
}

/// Serves console commands until the client leaves.
pub async fn run(shared: Arc<Shared>, mut client: PqStream) -> Result<(), StreamError> {
    loop {
        let f = match client.read_frame().await {
            Ok(f) => f,
            Err(StreamError::Closed) => return Ok(()),
            Err(e) => return Err(e),
        };
        match f.tag() {
            b'X' => return Ok(()),
            b'Q' => {
                let sql = query_text(f.body())
                    .map(String::from_utf8_lossy)
                    .unwrap_or_default();
                let cmd = ConsoleCommand::parse(&sql);
                let immediate_stop =
                    matches!(cmd, Ok(ConsoleCommand::Shutdown(Shutdown::Immediate)));
                let out = client.out();
                let done = match cmd {
                    Ok(c) => c.execute(&shared, out).await,
                    Err(e) => Err(e),
                };
                if let Err(e) = done {
                    e.encode(out);
                }
                if immediate_stop {
                    // As PgBouncer: no answer; the connection ends with the process.
                    client.flush().await?;
                    shared.shutdown.cancelled().await;
                    return Ok(());
                }
                messages::ready_for_query(client.out(), b'I');
                client.flush().await?;
            }
            b'S' => {
                messages::ready_for_query(client.out(), b'I');
                client.flush().await?;
            }
            b'H' => {}
            _ => {
                admin_error("extended query protocol not supported by admin console")
                    .encode(client.out());
                client.flush().await?;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_pgbouncer_grammar() {
        let p = |s: &str| ConsoleCommand::parse(s).ok();
        assert_eq!(p("show pools;"), Some(ConsoleCommand::Show(Show::Pools)));
        assert_eq!(
            p("SHOW STATS_TOTALS"),
            Some(ConsoleCommand::Show(Show::StatsTotals))
        );
        assert_eq!(
            p("kill \"my db\""),
            Some(ConsoleCommand::Kill(Some("my db".into())))
        );
        assert_eq!(p("RECONNECT"), Some(ConsoleCommand::Reconnect(None)));
        assert_eq!(
            p("shutdown wait_for_clients"),
            Some(ConsoleCommand::Shutdown(Shutdown::Drain))
        );
        assert_eq!(p("SUSPEND now"), None);
        assert_eq!(p("DROP TABLE customers"), None);
        assert_eq!(p("SHOW"), None);
        let e = ConsoleCommand::parse("SHOW nothing")
            .err()
            .map(|e| e.message);
        assert_eq!(
            e.as_deref(),
            Some("invalid command 'SHOW nothing', use SHOW HELP;")
        );
    }
}
