//! CONNECT: protocol checks, credentials, the will, client-id namespacing
//! and takeover, the per-user cap, the session (resumed from the store,
//! new, or clean), then CONNACK.

use super::*;

impl<S> Connection<S>
where
    S: AsyncRead + AsyncWrite + Unpin + Send,
{
    /// Reads and checks CONNECT, answers CONNACK. `Ok(None)` when the
    /// connection was refused with a CONNACK.
    pub(super) async fn handshake(
        shared: Arc<Shared>,
        mut stream: S,
        peer: Option<IpAddr>,
    ) -> Result<Option<Self>, ConnError> {
        let max = shared.settings.max_packet_size;
        let mut inbuf = BytesMut::with_capacity(512);
        let deadline = Instant::now() + shared.settings.connect_timeout;
        // Counted among its address's unauthenticated connections until the
        // CONNACK (this function's end).
        let waiting = peer.map(|addr| shared.unauthenticated.enter(addr));
        let evicted = async {
            match &waiting {
                Some(w) => w.evicted.cancelled().await,
                None => std::future::pending().await,
            }
        };
        tokio::pin!(evicted);
        let mut was_evicted = false;
        let version = loop {
            match codec::sniff(&inbuf, max) {
                Sniff::Incomplete => {}
                Sniff::Connect(v) => break v,
                Sniff::UnsupportedLevel(level) => {
                    // 3.1.1 §3.2.2.3: answer 0x01 and close.
                    let mut out = BytesMut::new();
                    let ack = ConnAck {
                        session_present: false,
                        code: ConnectReturnCode::RefusedProtocolVersion,
                    };
                    let _ = Version::V311.write(Packet::ConnAck(ack, None), &mut out);
                    stream.write_all(&out).await?;
                    stream.flush().await?;
                    debug!(level, "unsupported protocol level");
                    return Ok(None);
                }
                Sniff::NotConnect => {
                    return Err(ConnError::Violation("first packet is not CONNECT"))
                }
            }
            // Evicted (a newer connection from its address needed the
            // room), a connection goes on only while its bytes are already
            // there: each read gets one look, after the reactor has run
            // (`yield_now` defers until then). The CONNECTs of a reconnect
            // storm behind one address are there, waiting to be read; a
            // socket with nothing to say is closed.
            let n = if was_evicted {
                tokio::task::yield_now().await;
                match stream.read_buf(&mut inbuf).now_or_never() {
                    Some(read) => read?,
                    None => return Err(ConnError::Evicted),
                }
            } else {
                tokio::select! {
                    biased;
                    read = tokio::time::timeout_at(deadline, stream.read_buf(&mut inbuf)) => {
                        read.map_err(|_| ConnError::ConnectTimeout)??
                    }
                    _ = &mut evicted => {
                        was_evicted = true;
                        continue;
                    }
                }
            };
            if n == 0 {
                return Err(ConnError::Violation("closed before CONNECT"));
            }
        };
        let packet = version.read(&mut inbuf, max).map_err(ConnError::Protocol)?;
        let Packet::Connect(connect, props, will, will_props, login) = packet else {
            return Err(ConnError::Violation("first packet is not CONNECT"));
        };

        let refuse = |code: ConnectReturnCode| async move {
            let mut out = BytesMut::new();
            let ack = ConnAck {
                session_present: false,
                code,
            };
            let _ = version.write(Packet::ConnAck(ack, None), &mut out);
            (out, code)
        };

        // An MQTT 5 CONNECT asks what this server cannot honour: refused
        // before the credentials, as an authentication method changes what
        // they are (MQTT-4.12.0-1).
        if let Some(code) = props.as_ref().and_then(connect_refusal) {
            let (out, _) = refuse(code).await;
            stream.write_all(&out).await?;
            stream.flush().await?;
            info!(client_id = %connect.client_id, ?code, "CONNECT refused");
            return Ok(None);
        }

        let auth = match &login {
            Some(login) => shared
                .authenticator
                .authenticate(&login.username, login.password.as_bytes()),
            None => Err(Refusal::BadCredentials),
        };
        let principal = match auth {
            Ok(p) => p,
            Err(refusal) => {
                metrics::counter!(crate::metrics::AUTH_FAILURES_TOTAL).increment(1);
                let code = match refusal {
                    Refusal::BadCredentials => ConnectReturnCode::BadUserNamePassword,
                    Refusal::NotAuthorized => ConnectReturnCode::NotAuthorized,
                };
                let (out, _) = refuse(code).await;
                stream.write_all(&out).await?;
                stream.flush().await?;
                info!(client_id = %connect.client_id, %refusal, "CONNECT refused");
                return Ok(None);
            }
        };

        // A will is a publish made on the client's behalf, so it is held to
        // the same rule as any publish; and to what the CONNACK offers:
        // Maximum QoS 1 and Retain Available 0 (MQTT-3.2.2-12, -13). MQTT
        // 3.1.1 has no QoS to refuse a will's QoS 2 with, and every
        // delivery is at most QoS 1 anyway; a retained will it can only
        // refuse as not authorized.
        if let Some(will) = &will {
            let allowed = acl::is_valid_topic_name(&will.topic)
                && std::str::from_utf8(&will.topic)
                    .is_ok_and(|t| shared.acl.may_publish(principal.user_id, t));
            let refusal = if !allowed {
                Some((ConnectReturnCode::NotAuthorized, "will topic not allowed"))
            } else if will.retain {
                Some((
                    match version {
                        Version::V311 => ConnectReturnCode::NotAuthorized,
                        Version::V5 => ConnectReturnCode::RetainNotSupported,
                    },
                    "will retain not supported",
                ))
            } else if version == Version::V5 && will.qos == QoS::ExactlyOnce {
                Some((
                    ConnectReturnCode::QoSNotSupported,
                    "will QoS 2 not supported",
                ))
            } else {
                None
            };
            if let Some((code, why)) = refusal {
                let (out, _) = refuse(code).await;
                stream.write_all(&out).await?;
                stream.flush().await?;
                info!(user_id = principal.user_id, "CONNECT refused: {why}");
                return Ok(None);
            }
        }

        let assigned = if connect.client_id.is_empty() {
            if !connect.clean_session {
                let (out, _) = refuse(ConnectReturnCode::ClientIdentifierNotValid).await;
                stream.write_all(&out).await?;
                stream.flush().await?;
                return Ok(None);
            }
            Some(format!("auto-{:016x}", rand::random::<u64>()))
        } else {
            None
        };
        let client_id = assigned.clone().unwrap_or(connect.client_id.clone());
        let session_id = namespaced_client_id(principal.user_id, &client_id);

        // A client id the user already has connected takes that connection
        // over (a phone back from a dead network): it may pass the cap, as
        // the one it replaces is about to go.
        let replaces = shared.registry.has_client(principal.user_id, &session_id);
        let Some(user_slot) = shared.user_slots.try_take(principal.user_id, replaces) else {
            metrics::counter!(crate::metrics::CONNECTIONS_REFUSED_TOTAL, "reason" => crate::metrics::REFUSED_USER_CAP)
                .increment(1);
            let (out, _) = refuse(version.quota_exceeded()).await;
            stream.write_all(&out).await?;
            stream.flush().await?;
            info!(
                user_id = principal.user_id,
                cap = shared.settings.max_connections_per_user,
                "CONNECT refused: the user has too many connections"
            );
            return Ok(None);
        };

        // The session: MQTT 5 asks for an expiry (capped by ours; 0 ends
        // the session with the connection), 3.1.1's clean session 0 gets
        // ours. Clean Start discards what the store holds for the id.
        let clean_start = connect.clean_session;
        let max_expiry =
            u32::try_from(shared.settings.session_expiry.as_secs()).unwrap_or(u32::MAX);
        let (expiry, asked) = match version {
            Version::V5 => {
                let asked = props
                    .as_ref()
                    .and_then(|p| p.session_expiry_interval)
                    .unwrap_or(0);
                (asked.min(max_expiry), asked)
            }
            Version::V311 if clean_start => (0, 0),
            Version::V311 => (max_expiry, max_expiry),
        };
        let session_id: Arc<str> = session_id.into();
        let opened = if clean_start && expiry == 0 {
            // An id the server just made up has no session to discard.
            match shared.sessions.get().filter(|_| assigned.is_none()) {
                Some(store) => store
                    .discard(principal.user_id, &session_id)
                    .await
                    .map(|()| None),
                None => Ok(None),
            }
        } else {
            Self::open_session(&shared, principal.user_id, &session_id, clean_start, expiry).await
        };
        let persist = match opened {
            Ok(p) => p,
            Err(e) => {
                let (out, _) = refuse(version.unavailable()).await;
                stream.write_all(&out).await?;
                stream.flush().await?;
                return Err(ConnError::Store(e.0));
            }
        };
        let session_present = persist.as_ref().is_some_and(|p| p.present());
        if session_present {
            persist::cancel_will(&shared, &session_id);
        }

        let settings = &shared.settings;
        let limit = usize::try_from(settings.max_inflight).unwrap_or(usize::MAX);
        let receive_max = props
            .as_ref()
            .and_then(|p| p.receive_maximum)
            .filter(|&n| n > 0)
            .map_or(limit, usize::from);
        let mailbox = Arc::new(Mailbox::new(settings.mailbox_size));
        let mut subscriptions = std::collections::HashSet::new();
        for f in persist
            .as_ref()
            .map(|p| p.stored_filters())
            .unwrap_or_default()
        {
            subscriptions.insert(f.filter.clone());
            mailbox.subscribe(f);
        }
        metrics::gauge!(crate::metrics::SUBSCRIPTIONS).increment(subscriptions.len() as f64);
        let direct = Direct {
            mailbox,
            flight: Flight {
                inflight: VecDeque::new(),
                window: limit.min(receive_max).max(1),
                last_pkid: 0,
                max_packet: props.as_ref().and_then(|p| p.max_packet_size),
                opened: false,
            },
        };

        // Sized by what is written: an idle connection holds a few bytes.
        let mut outbuf = BytesMut::new();
        let props = (version == Version::V5).then(|| ConnAckProperties {
            assigned_client_identifier: assigned,
            max_qos: Some(MAX_QOS),
            retain_available: Some(0),
            shared_subscription_available: Some(0),
            wildcard_subscription_available: Some(1),
            subscription_identifiers_available: Some(1),
            topic_alias_max: Some(TOPIC_ALIAS_MAX),
            // Lowered to ours: the client must use it (§3.2.2.3.2).
            session_expiry_interval: (asked != expiry).then_some(expiry),
            ..Default::default()
        });
        let ack = ConnAck {
            session_present,
            code: ConnectReturnCode::Success,
        };
        version
            .write(Packet::ConnAck(ack, props), &mut outbuf)
            .map_err(ConnError::Protocol)?;
        stream.write_all(&outbuf).await?;
        stream.flush().await?;
        outbuf.clear();

        let keep_alive = (connect.keep_alive > 0)
            .then(|| Duration::from_millis(u64::from(connect.keep_alive) * 1500));
        info!(
            user_id = principal.user_id,
            client_id = %client_id,
            ?version,
            keep_alive = connect.keep_alive,
            clean_start,
            session_expiry = expiry,
            session_present,
            "client connected"
        );
        let quota = shared_packet_quota(&shared);
        let clock = shared.clock.clone();
        Ok(Some(Connection {
            shared,
            stream,
            version,
            principal,
            client_id,
            keep_alive,
            inbuf,
            outbuf,
            session_id,
            direct,
            persist,
            will: will
                .and_then(|w| persist::Will::new(w, will_props))
                .map(Box::new),
            to_uplink: Vec::new(),
            subscriptions,
            inbound: governor::RateLimiter::direct_with_clock(quota, clock),
            uplink: None,
            pending_subacks: HashMap::new(),
            unacked: 0,
            ack_wait_since: None,
            _user_slot: user_slot,
        }))
    }
}

/// Why an MQTT 5 CONNECT is refused before its credentials are looked at,
/// as the CONNACK code that says so; `None` when nothing is.
fn connect_refusal(props: &protocol::ConnectProperties) -> Option<ConnectReturnCode> {
    // No enhanced authentication: 0x8C, then close (MQTT-4.12.0-1).
    if props.authentication_method.is_some() {
        return Some(ConnectReturnCode::BadAuthenticationMethod);
    }
    // Authentication data without a method (§3.1.2.11.10), a Receive
    // Maximum or a Maximum Packet Size of 0 (§3.1.2.11.3, §3.1.2.11.4) are
    // protocol errors; 0x82 before closing (§4.13.2). A packet size of 0
    // would otherwise skip every delivery as too large.
    let zero = props.receive_maximum == Some(0) || props.max_packet_size == Some(0);
    if zero || props.authentication_data.is_some() {
        return Some(ConnectReturnCode::ProtocolError);
    }
    None
}
