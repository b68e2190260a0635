//! One WebSocket connection, independent of the web framework and of the wire format: it reads
//! frames through its [`Codec`], runs the commands (CRUD through [`crate::actions`], jobs,
//! subscriptions), and queues replies and events on its bounded [`Outbox`], which the adapter's
//! single writer task drains.

mod catch_up;
mod index;
mod subscriptions;

use std::collections::HashMap;
use std::sync::Arc;

use serde_json::value::RawValue;
use tokio::sync::watch;

use crate::actions;
use crate::app::App;
use crate::auth::Principal;
use crate::error::ApiError;
use crate::hub::Audience;
use crate::outbox::{Bounds, CloseReason, Drain, Outbox};
use crate::protocol::{Codec, Command, Declared, Echo, Request};
use crate::resource::binding::Binding;
use crate::throttle::Throttle;
use index::Subscriptions;

/// What a handler did: a reply still to send, or everything already sent (a reply followed by a
/// replay must go out in that order).
enum Handled {
    Reply(u16, Option<Box<RawValue>>),
    Sent,
}

/// The receiving side of one connection.
pub struct Connection {
    app: App,
    codec: &'static dyn Codec,
    principal: Principal,
    outbox: Arc<Outbox>,
    subscriptions: Subscriptions,
    throttle: Throttle,
    /// The client's address (the anonymous principal is throttled per address).
    client: Option<std::net::IpAddr>,
    /// This connection's audience per stream, made on first use.
    audiences: HashMap<&'static str, Arc<Audience>>,
    /// What catches its subscriptions up when they fall behind, made on first use.
    follow: Option<Arc<catch_up::Follow>>,
}

impl Connection {
    /// Opens a connection's state for `principal`, speaking `codec`; the adapter's writer drains
    /// the returned [`Drain`].
    pub fn open(app: &App, principal: Principal, codec: &'static dyn Codec) -> (Self, Drain) {
        let config = app.config();
        let throttle = Throttle::connection(config);
        let (outbox, outgoing) = Outbox::open(Bounds {
            bytes: config.queue_bytes,
            frames: config.outgoing_queue,
            send_timeout: config.send_timeout,
        });
        app.sessions().register(&principal, &outbox);
        let connection = Self {
            app: app.clone(),
            codec,
            principal,
            outbox,
            subscriptions: Subscriptions::default(),
            throttle,
            client: None,
            audiences: HashMap::new(),
            follow: None,
        };
        (connection, outgoing)
    }

    /// A process-unique id (for logs).
    pub fn id(&self) -> u64 {
        self.outbox.id()
    }

    /// Who the connection acts as.
    pub fn principal(&self) -> &Principal {
        &self.principal
    }

    /// The client's address ([`App::client_ip`] of the handshake): an anonymous connection's
    /// requests count against its address's rate limit, shared with its HTTP requests.
    pub fn set_client(&mut self, client: Option<std::net::IpAddr>) {
        self.client = client;
    }

    /// Closes the connection from the server side.
    pub fn close(&self, reason: CloseReason) {
        self.outbox.close(reason);
    }

    /// The connection's outbox (the adapter's liveness checks ping and close through it).
    pub fn outbox(&self) -> &Arc<Outbox> {
        &self.outbox
    }

    /// A receiver that changes when the connection is told to close (the adapter stops reading).
    pub fn closing(&self) -> watch::Receiver<Option<CloseReason>> {
        self.outbox.closing()
    }

    /// Whether the connection was told to close.
    pub fn is_closing(&self) -> bool {
        self.outbox.is_closing()
    }

    /// Asks the writer to ping the peer (the adapter does when the connection is idle).
    pub fn ping(&self) {
        self.outbox.ping();
    }

    /// Handles one text frame and queues its reply. Returns false once the connection is gone.
    pub async fn handle_text(&mut self, text: &str) -> bool {
        let admitted = self.admit();
        let request = match self.codec.decode(text) {
            Ok(request) => request,
            Err(rejected) => {
                let error = if admitted {
                    &rejected.error
                } else {
                    &ApiError::Throttled
                };
                let reply = self.codec.error(&rejected.echo(), error);
                return self.outbox.send(reply).await;
            }
        };
        let result = if admitted {
            self.dispatch(&request).await
        } else {
            Err(ApiError::Throttled)
        };
        let echo = request.echo();
        let reply = match result {
            Ok(Handled::Sent) => return !self.outbox.is_gone(),
            Ok(Handled::Reply(status, data)) => self.codec.reply(&echo, status, data.as_deref()),
            Err(error) => Some(self.codec.error(&echo, &error)),
        };
        match reply {
            Some(reply) => self.outbox.send(reply).await,
            None => !self.outbox.is_gone(),
        }
    }

    /// Answers a binary frame: the formats are JSON text only.
    pub async fn handle_binary(&mut self) -> bool {
        let error = if self.admit() {
            ApiError::bad_request("Binary frames are not supported: send JSON text.")
        } else {
            ApiError::Throttled
        };
        let reply = self.codec.error(&Echo::NONE, &error);
        self.outbox.send(reply).await
    }

    /// The connection's and the principal's (anonymous: the address's) rate limits.
    fn admit(&mut self) -> bool {
        self.throttle.admit() && self.app.admit(&self.principal, self.client).is_ok()
    }

    /// This connection's audience for `binding`'s events (one per stream).
    fn audience(&mut self, binding: &'static dyn Binding) -> Arc<Audience> {
        self.audiences
            .entry(binding.meta().stream)
            .or_insert_with(|| Audience::new(binding, &self.principal))
            .clone()
    }

    /// The catch-up of this connection's subscriptions.
    fn follow(&mut self) -> Arc<dyn crate::hub::CatchUp> {
        self.follow
            .get_or_insert_with(|| catch_up::Follow::new(&self.app))
            .clone()
    }

    async fn dispatch(&mut self, request: &Request) -> Result<Handled, ApiError> {
        let binding = self.codec.resolve(self.app.registry(), request)?;
        let declared = Declared {
            jobs: self.app.jobs(),
            registry: self.app.registry(),
        };
        let command = self.codec.command(binding, declared, request)?;
        match command {
            Command::Crud(op) => {
                let outcome = actions::execute(&self.app, &self.principal, binding, op).await?;
                Ok(Handled::Reply(outcome.status, outcome.data))
            }
            Command::Action { action, pk, args } => {
                let outcome = actions::custom(&self.app, &self.principal, action, pk, args).await?;
                Ok(Handled::Reply(outcome.status, outcome.data))
            }
            Command::Job { job, pk, args } => {
                let state = self
                    .app
                    .jobs()
                    .start(&self.principal, job, pk, args)
                    .await?;
                Ok(Handled::Reply(202, Some(state)))
            }
            Command::Subscribe {
                target,
                options,
                must_exist,
            } => {
                self.subscribe(binding, target, request, options, must_exist)
                    .await
            }
            Command::SubscribeQuery {
                query,
                limit,
                options,
            } => {
                self.subscribe_query(binding, &query, limit, request, options)
                    .await
            }
            Command::Unsubscribe(matching) => {
                let id = self.codec.subscription_id(&request.request_id);
                let stream = binding.meta().stream;
                let removed = self.subscriptions.remove(stream, &id, &matching);
                if removed.is_empty() {
                    return Err(ApiError::NotFound);
                }
                for target in removed {
                    self.app
                        .hub()
                        .unsubscribe(stream, &target, self.outbox.id(), &id);
                }
                Ok(Handled::Reply(204, None))
            }
        }
    }
}

impl Drop for Connection {
    fn drop(&mut self) {
        let hub = self.app.hub();
        for (stream, id, target) in self.subscriptions.iter() {
            hub.unsubscribe(stream, target, self.outbox.id(), id);
        }
    }
}
