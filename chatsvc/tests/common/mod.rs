//! The chatsvc router in-process, over a real SQLite file and a real
//! (in-process) broker, for handler tests driven with `oneshot`.

use std::sync::Arc;
use std::time::Duration;

use mqchat_chatsvc::api::{self, AppState};
use mqchat_chatsvc::domain::{Chat, Limits, Tokens};
use mqchat_chatsvc::downlink::BrokerDownlink;
use mqchat_chatsvc::store::Store;

pub struct App {
    pub router: axum::Router,
    _dir: tempfile::TempDir,
}

pub fn app() -> Result<App, Box<dyn std::error::Error>> {
    let dir = tempfile::tempdir()?;
    let store = Store::open(&dir.path().join("chat.db"))?;
    let tokens = Arc::new(Tokens::new(
        b"handler-test-secret-handler-test-secret-handler-test-secret!!!!",
        Duration::from_secs(60),
        Duration::from_secs(3600),
    ));
    let broker = mqchat_broker::Broker::start(
        mqchat_broker::Settings::default(),
        tokens.clone(),
        tokio_util::sync::CancellationToken::new(),
    )?;
    let chat = Chat::new(
        store,
        tokens,
        Arc::new(BrokerDownlink(broker.clone())),
        Limits::default(),
    );
    Ok(App {
        router: api::router(AppState {
            chat,
            broker,
            metrics: None,
            admin_token: Arc::from("handler-test-admin-token"),
            web: Arc::default(),
            cluster: None,
        }),
        _dir: dir,
    })
}
