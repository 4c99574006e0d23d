//! The `tenantgate` binary: parse the command line and hand over to `cli::run`.

use clap::Parser;

fn main() {
    let cli = tenantgate::cli::Cli::parse();
    match tenantgate::cli::run(cli) {
        Ok(code) => std::process::exit(code),
        Err(e) => {
            eprintln!("tenantgate: {}", tenantgate::cli::render_error(&e));
            std::process::exit(2);
        }
    }
}
