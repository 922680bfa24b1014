//! `ecs-tunnels`: with no arguments and `AWS_LAMBDA_RUNTIME_API` set, serves Lambda
//! invocations; otherwise a CLI.

use clap::Parser;
use ecs_tunnels::{cli, config::Config, doors::lambda, logging};
use std::process::ExitCode;

fn main() -> ExitCode {
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::from(cli::EXIT_RETRY);
        }
    };
    let lambda_mode =
        std::env::args_os().len() == 1 && std::env::var_os("AWS_LAMBDA_RUNTIME_API").is_some();
    if lambda_mode {
        logging::init_json();
        runtime.block_on(async {
            match lambda::serve(lambda::Init::new(Config::from_env())).await {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => {
                    tracing::error!(error = %e, "runtime stopped");
                    ExitCode::FAILURE
                }
            }
        })
    } else {
        let args = cli::Cli::parse();
        logging::init_cli(args.verbose);
        runtime.block_on(cli::run(args))
    }
}
