//! `chatd`: parse configuration, set up logging, run until SIGINT/SIGTERM.

use mqchat_chatsvc::config::{Cli, Command, LogFormat};
use tracing_subscriber::EnvFilter;

#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let Cli { config, command } = match mqchat_chatsvc::config::load() {
        Ok(cli) => cli,
        Err(mqchat_chatsvc::config::ConfigError::Args(e)) => e.exit(),
        Err(e) => {
            eprintln!("chatd: {e}");
            std::process::exit(2);
        }
    };
    let filter = EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| EnvFilter::new("info,rumqttd=warn,tower_http=warn"));
    let logs = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stdout()));
    match config.log_format {
        LogFormat::Json => logs.json().init(),
        LogFormat::Text => logs.init(),
    }
    if let Some(Command::Admin(admin)) = command {
        match mqchat_chatsvc::admin::run(admin, &config).await {
            Ok(out) => {
                println!("{out}");
                return Ok(());
            }
            Err(e) => {
                eprintln!("chatd admin: {e}");
                std::process::exit(1);
            }
        }
    }
    let running = mqchat_chatsvc::start(config).await?;
    let token = running.shutdown_token();
    tokio::spawn(async move {
        wait_for_signal().await;
        tracing::info!("shutting down");
        token.cancel();
    });
    running.wait().await;
    Ok(())
}

async fn wait_for_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        match signal(SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = tokio::signal::ctrl_c() => {}
                    _ = term.recv() => {}
                }
            }
            Err(_) => {
                let _ = tokio::signal::ctrl_c().await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}
