//! Signed-in users who flood, lock others out, or detect blocks.

use std::net::{IpAddr, Ipv4Addr};
use std::time::{Duration, Instant};

use anyhow::Result;
use mqchat_e2e::TestServer;
use serde_json::{json, Value};

/// An HTTP client whose connections come from `ip` (any 127.0.0.0/8
/// address reaches chatd on loopback), to play clients at other addresses.
fn client_from(ip: [u8; 4]) -> Result<reqwest::Client> {
    Ok(reqwest::Client::builder()
        .local_address(IpAddr::V4(Ipv4Addr::from(ip)))
        .timeout(Duration::from_secs(20))
        .build()?)
}

/// `POST path` with a JSON body from `client`: the status and body.
async fn post_from(
    client: &reqwest::Client,
    server: &TestServer,
    path: &str,
    body: &Value,
) -> Result<(u16, Value)> {
    let res = client.post(server.url(path)).json(body).send().await?;
    let status = res.status().as_u16();
    Ok((status, res.json().await.unwrap_or(Value::Null)))
}

async fn login_from(
    client: &reqwest::Client,
    server: &TestServer,
    name: &str,
    password: &str,
) -> Result<u16> {
    let body = json!({"username": name, "password": password});
    Ok(post_from(client, server, "/v1/auth/login", &body).await?.0)
}

// Item 11: anyone could lock an account out; rotating addresses defeated
// the per-address limit.

#[tokio::test]
async fn wrong_passwords_from_elsewhere_do_not_lock_the_owner_out() -> Result<()> {
    let server = TestServer::start().await?;
    server.user("carol").await?;
    let attacker = client_from([127, 0, 1, 66])?;
    let mut statuses = Vec::new();
    for i in 0..15 {
        statuses.push(login_from(&attacker, &server, "carol", &format!("guess-{i}")).await?);
    }
    assert_eq!(&statuses[..10], [401; 10], "{statuses:?}");
    assert!(
        statuses[10..].iter().all(|&s| s == 429),
        "the guesser slows down: {statuses:?}"
    );
    // The owner, from another /24, still gets in at once.
    let owner = client_from([127, 0, 2, 10])?;
    let started = Instant::now();
    assert_eq!(
        login_from(&owner, &server, "carol", "password-carol").await?,
        200
    );
    eprintln!("owner's login after 15 guesses: {:?}", started.elapsed());
    // The guesser rotating inside its /24 buys nothing.
    let rotated = client_from([127, 0, 1, 67])?;
    assert_eq!(
        login_from(&rotated, &server, "carol", "guess-x").await?,
        429
    );
    Ok(())
}

#[tokio::test]
async fn rotating_addresses_in_one_prefix_buys_no_registrations() -> Result<()> {
    let server = TestServer::start_with(&["--auth-ip-rate", "20"]).await?;
    let mut statuses = Vec::new();
    for i in 1..=40u8 {
        let client = client_from([127, 0, 3, i])?;
        let body = json!({"username": format!("bot{i}"), "password": "password-bot"});
        statuses.push(
            post_from(&client, &server, "/v1/auth/register", &body)
                .await?
                .0,
        );
    }
    let created = statuses.iter().filter(|&&s| s == 201).count();
    assert_eq!(
        created, 20,
        "one /24's budget, however many addresses: {statuses:?}"
    );
    assert!(statuses[20..].iter().all(|&s| s == 429), "{statuses:?}");
    // Another /24 has its own budget.
    let elsewhere = client_from([127, 0, 4, 1])?;
    let body = json!({"username": "neighbour", "password": "password-x"});
    assert_eq!(
        post_from(&elsewhere, &server, "/v1/auth/register", &body)
            .await?
            .0,
        201
    );
    Ok(())
}
