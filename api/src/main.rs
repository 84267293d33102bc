use std::process::ExitCode;

use api::config::{Cli, Command, TokenArgs};
use clap::Parser;

#[tokio::main]
async fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Some(Command::Schema) => {
            print!("{}", api::schema::sdl());
            ExitCode::SUCCESS
        }
        Some(Command::Token(args)) => token(&args),
        Some(Command::Serve(config)) => serve(config).await,
        None => serve(cli.serve).await,
    }
}

fn token(args: &TokenArgs) -> ExitCode {
    let signed = api::server::resolve_secret(&args.secret).map_err(|e| e.to_string()).and_then(|secret| {
        let role = args.role.parse().map_err(|e: api::auth::AuthError| e.to_string())?;
        api::auth::issue_token(&args.sub, role, args.ttl, &secret).map_err(|e| e.to_string())
    });
    match signed {
        Ok(token) => {
            println!("{token}");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("cartsource token: {e}");
            ExitCode::FAILURE
        }
    }
}

async fn serve(config: api::Config) -> ExitCode {
    api::server::init_tracing(&config);
    let signal = api::server::shutdown_signal();
    let app = match api::Application::build(&config).await {
        Ok(app) => app,
        Err(e) => {
            tracing::error!("cannot start: {e}");
            return ExitCode::FAILURE;
        }
    };
    match app.local_addr() {
        Ok(addr) => {
            tracing::info!(%addr, role = api::server::role_name(config.role), store = %store::connect::redact(&config.database_url()), "cartsource listening; GraphiQL at http://{addr}/graphql")
        }
        Err(e) => tracing::warn!(error = %e, "cannot read the bound address"),
    }
    if let Err(e) = app.run_until(signal).await {
        tracing::error!(error = %e, "server failed");
        return ExitCode::FAILURE;
    }
    ExitCode::SUCCESS
}
