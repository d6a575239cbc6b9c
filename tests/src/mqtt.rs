//! [`Mqtt`]: a rumqttc client of one test user, subscribed to its own
//! space, and what it [`Seen`]s.

use std::time::Duration;

use anyhow::{anyhow, bail, Result};
use rumqttc::{AsyncClient, ConnectionError, Event, MqttOptions, Packet, QoS, Transport};
use serde_json::Value;
use tokio::sync::mpsc;

use crate::*;

/// What an [`Mqtt`] client saw.
#[derive(Debug)]
pub enum Seen {
    Publish { topic: String, payload: Value },
    SubAck(Vec<rumqttc::SubscribeReasonCode>),
    Error(String),
}

/// A rumqttc client with its event loop running in a task.
pub struct Mqtt {
    pub client: AsyncClient,
    rx: mpsc::UnboundedReceiver<Seen>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Mqtt {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl Mqtt {
    /// A rumqttc (MQTT 3.1.1) client over TCP to `mqtt` (a chatd, or a
    /// balancer in front of several) for `user`, subscribed to its own
    /// topic space at QoS 1.
    pub async fn own_space_tcp(mqtt: SocketAddr, user: &TestUser) -> Result<Mqtt> {
        let id = format!("t-{}-{}", user.name, rand_suffix());
        let opts = MqttOptions::new(id, mqtt.ip().to_string(), mqtt.port());
        subscribed_to_own_space(opts, user).await
    }

    /// Same over WebSocket at `ws://{http}/mqtt`.
    pub async fn own_space_ws(http: SocketAddr, user: &TestUser) -> Result<Mqtt> {
        let id = format!("w-{}-{}", user.name, rand_suffix());
        let mut opts = MqttOptions::new(id, format!("ws://{http}/mqtt"), http.port());
        opts.set_transport(Transport::Ws);
        subscribed_to_own_space(opts, user).await
    }

    /// Connects and waits for a successful CONNACK; a refusal is an error
    /// carrying the CONNACK code.
    pub async fn connect(opts: MqttOptions) -> Result<Mqtt> {
        let (client, mut eventloop) = AsyncClient::new(opts, 64);
        let first = tokio::time::timeout(patient(Duration::from_secs(10)), eventloop.poll())
            .await
            .map_err(|_| anyhow!("no CONNACK within 10 s"))?;
        match first {
            Ok(Event::Incoming(Packet::ConnAck(_))) => {}
            Ok(other) => bail!("expected CONNACK, got {other:?}"),
            Err(ConnectionError::ConnectionRefused(code)) => bail!("refused: {code:?}"),
            Err(e) => bail!("connect: {e}"),
        }
        let (tx, rx) = mpsc::unbounded_channel();
        let task = tokio::spawn(async move {
            loop {
                match eventloop.poll().await {
                    Ok(Event::Incoming(Packet::Publish(p))) => {
                        let payload = serde_json::from_slice(&p.payload).unwrap_or_else(|_| {
                            Value::String(String::from_utf8_lossy(&p.payload).into_owned())
                        });
                        let _ = tx.send(Seen::Publish {
                            topic: p.topic,
                            payload,
                        });
                    }
                    Ok(Event::Incoming(Packet::SubAck(s))) => {
                        let _ = tx.send(Seen::SubAck(s.return_codes));
                    }
                    Ok(_) => {}
                    Err(e) => {
                        let _ = tx.send(Seen::Error(e.to_string()));
                        return;
                    }
                }
            }
        });
        Ok(Mqtt { client, rx, task })
    }

    /// Subscribes and waits for the SUBACK.
    pub async fn subscribe_ack(
        &mut self,
        filter: &str,
        qos: QoS,
    ) -> Result<Vec<rumqttc::SubscribeReasonCode>> {
        self.client.subscribe(filter, qos).await?;
        loop {
            match self.next(Duration::from_secs(5)).await? {
                Some(Seen::SubAck(codes)) => return Ok(codes),
                Some(Seen::Error(e)) => bail!("connection failed: {e}"),
                Some(_) => {}
                None => bail!("no SUBACK within 5 s"),
            }
        }
    }

    /// The next thing seen, or `None` after `wait` ([`patient`]).
    pub async fn next(&mut self, wait: Duration) -> Result<Option<Seen>> {
        self.next_within(patient(wait)).await
    }

    /// [`Mqtt::next`] for a wait already scaled.
    async fn next_within(&mut self, wait: Duration) -> Result<Option<Seen>> {
        match tokio::time::timeout(wait, self.rx.recv()).await {
            Ok(Some(s)) => Ok(Some(s)),
            Ok(None) => Ok(None),
            Err(_) => Ok(None),
        }
    }

    /// The next publish on a topic ending in `/{subtopic}` within `wait`.
    pub async fn next_on(&mut self, subtopic: &str, wait: Duration) -> Result<Option<Value>> {
        self.next_on_within(subtopic, patient(wait)).await
    }

    async fn next_on_within(&mut self, subtopic: &str, wait: Duration) -> Result<Option<Value>> {
        let deadline = tokio::time::Instant::now() + wait;
        let suffix = format!("/{subtopic}");
        loop {
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            match self.next_within(left).await? {
                Some(Seen::Publish { topic, payload }) if topic.ends_with(&suffix) => {
                    return Ok(Some(payload))
                }
                Some(Seen::Error(e)) => bail!("connection failed: {e}"),
                Some(_) => {}
                None => return Ok(None),
            }
        }
    }

    /// Events (on `/events`) until one of `kind` arrives; returns it.
    pub async fn next_of_type(&mut self, kind: &str, wait: Duration) -> Result<Option<Value>> {
        let deadline = tokio::time::Instant::now() + patient(wait);
        loop {
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            match self.next_on_within("events", left).await? {
                Some(v) if v["type"] == kind => return Ok(Some(v)),
                Some(_) => {}
                None => return Ok(None),
            }
        }
    }

    /// The next publish's JSON payload within `wait` (skipping acks).
    pub async fn next_event(&mut self, wait: Duration) -> Result<Option<Value>> {
        let deadline = tokio::time::Instant::now() + patient(wait);
        loop {
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            match self.next_within(left).await? {
                Some(Seen::Publish { payload, .. }) => return Ok(Some(payload)),
                Some(Seen::Error(e)) => bail!("connection failed: {e}"),
                Some(Seen::SubAck(_)) => {}
                None => return Ok(None),
            }
        }
    }

    /// Waits until the connection fails or is closed by the server.
    pub async fn wait_closed(&mut self, wait: Duration) -> Result<String> {
        let deadline = tokio::time::Instant::now() + patient(wait);
        loop {
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            match self.next_within(left).await? {
                Some(Seen::Error(e)) => return Ok(e),
                Some(_) => {}
                None => bail!("connection still open after {wait:?}"),
            }
        }
    }
}
