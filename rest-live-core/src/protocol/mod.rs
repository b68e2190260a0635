//! Wire formats. A [`Codec`] decodes a text frame into a [`Request`] (and, against the resource it
//! names, into a typed [`Command`]), and encodes replies and events; the connection above runs
//! commands without knowing which format it speaks. Two codecs: the `{stream, payload}` envelope
//! of channels-api / djangochannelsrestframework ([`envelope`], docs/protocol.md) and
//! django-rest-live's subscription format ([`drl`]).
//!
//! A new wire format is one more implementation of [`Codec`] (and of the hub's
//! [`EventEncoder`], which is how its events are encoded); nothing else changes.

pub mod drl;
pub mod envelope;

use std::sync::Arc;

use bytes::Bytes;
use serde_json::value::RawValue;
use serde_json::{Map, Value};

use crate::actions::Op;
use crate::error::ApiError;
use crate::hub::{EventEncoder, Target};
use crate::jobs::{JobBinding, Jobs};
use crate::query::parse::QueryInput;
use crate::registry::Registry;
use crate::resource::action::ActionBinding;
use crate::resource::binding::{Binding, Input};

/// The action a request names, parsed once at the edge.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verb {
    List,
    Retrieve,
    Create,
    Update,
    Patch,
    Delete,
    SubscribeInstance,
    UnsubscribeInstance,
    Subscribe,
    Unsubscribe,
    /// Any other name: a job of the resource, or 405.
    Other(String),
}

impl Verb {
    pub fn parse(name: &str) -> Self {
        match name {
            "list" => Self::List,
            "retrieve" => Self::Retrieve,
            "create" => Self::Create,
            "update" => Self::Update,
            "patch" => Self::Patch,
            "delete" => Self::Delete,
            "subscribe_instance" => Self::SubscribeInstance,
            "unsubscribe_instance" => Self::UnsubscribeInstance,
            "subscribe" => Self::Subscribe,
            "unsubscribe" => Self::Unsubscribe,
            other => Self::Other(other.to_owned()),
        }
    }

    pub fn as_str(&self) -> &str {
        match self {
            Self::List => "list",
            Self::Retrieve => "retrieve",
            Self::Create => "create",
            Self::Update => "update",
            Self::Patch => "patch",
            Self::Delete => "delete",
            Self::SubscribeInstance => "subscribe_instance",
            Self::UnsubscribeInstance => "unsubscribe_instance",
            Self::Subscribe => "subscribe",
            Self::Unsubscribe => "unsubscribe",
            Self::Other(name) => name,
        }
    }
}

/// A decoded request frame: which resource it names, what it asks, and its arguments (checked
/// against the resource by [`Codec::command`]).
#[derive(Debug)]
pub struct Request {
    /// The stream (envelope) or model label (django-rest-live) naming the resource.
    pub resource: String,
    /// `None` when the request named no action.
    pub verb: Option<Verb>,
    /// Echoed verbatim: a string, a number, or `null` when absent.
    pub request_id: Value,
    pub args: Map<String, Value>,
}

impl Request {
    /// What a reply to this request echoes.
    pub fn echo(&self) -> Echo<'_> {
        Echo {
            resource: Some(&self.resource),
            action: self.verb.as_ref().map(Verb::as_str),
            request_id: &self.request_id,
        }
    }
}

/// A frame that could not become a [`Request`], with what its reply can still echo.
#[derive(Debug)]
pub struct Rejected {
    pub resource: Option<String>,
    pub action: Option<String>,
    pub request_id: Value,
    pub error: ApiError,
}

impl Rejected {
    pub fn echo(&self) -> Echo<'_> {
        Echo {
            resource: self.resource.as_deref(),
            action: self.action.as_deref(),
            request_id: &self.request_id,
        }
    }
}

/// What a reply echoes of its request.
#[derive(Debug, Clone, Copy)]
pub struct Echo<'a> {
    pub resource: Option<&'a str>,
    pub action: Option<&'a str>,
    pub request_id: &'a Value,
}

impl Echo<'static> {
    /// For a frame that said nothing (a binary frame).
    pub const NONE: Self = Echo {
        resource: None,
        action: None,
        request_id: &Value::Null,
    };
}

/// `since` and `snapshot` of a subscription.
#[derive(Debug, Clone, Copy, Default)]
pub struct SubscribeOptions {
    /// Replay the changes after this seq first.
    pub since: Option<i64>,
    /// Reply with the group's members as of the subscription.
    pub snapshot: bool,
}

/// Which of a connection's subscriptions an unsubscribe removes (those with its subscription id).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Matching {
    /// The one following this target.
    Exact(Target),
    /// Every group and live-query subscription of the stream.
    AnySubscription,
}

/// What a request's action name may refer to beside CRUD: the declared jobs and custom actions.
#[derive(Clone, Copy)]
pub struct Declared<'a> {
    pub jobs: &'a Jobs,
    pub registry: &'a Registry,
}

/// A request, typed and checked against its resource.
pub enum Command {
    /// `list`, `retrieve`, `create`, `update`, `patch`, `delete`.
    Crud(Op),
    Subscribe {
        target: Target,
        options: SubscribeOptions,
        /// Only an object that exists (and that the principal may read) can be followed: its
        /// pk, checked with the registration (and as of the replay's start with `since`). `None`
        /// for a group, or for an object resumed with `since`, which the replay accounts for.
        must_exist: Option<Input>,
    },
    /// `subscribe` with `query` (PROTOCOL §4): checked against the principal's view of the
    /// resource by the connection, which knows the principal.
    SubscribeQuery {
        query: QueryInput,
        limit: Option<i64>,
        options: SubscribeOptions,
    },
    Unsubscribe(Matching),
    /// Run a custom action of the resource (200).
    Action {
        action: &'static dyn ActionBinding,
        pk: Option<Input>,
        args: Value,
    },
    /// Start a job of the resource (202).
    Job {
        job: &'static dyn JobBinding,
        pk: Option<Input>,
        args: Value,
    },
}

/// One wire format: decoding requests, encoding replies and (as an `EventEncoder`) events.
pub trait Codec: EventEncoder {
    /// Decodes one text frame.
    // `Rejected` is only built for a malformed frame: its size costs nothing on the valid path.
    #[allow(clippy::result_large_err)]
    fn decode(&self, text: &str) -> Result<Request, Rejected>;

    /// The resource a request names (404 if none).
    fn resolve(
        &self,
        registry: &Registry,
        request: &Request,
    ) -> Result<&'static dyn Binding, ApiError>;

    /// The request as a command on `binding` (405 for what it does not offer, 400 for bad
    /// arguments).
    fn command(
        &self,
        binding: &'static dyn Binding,
        declared: Declared<'_>,
        request: &Request,
    ) -> Result<Command, ApiError>;

    /// The id the hub knows the request's subscription by (JSON text): the `request_id`, or a
    /// fixed one for a format whose subscriptions are identified by their target alone.
    fn subscription_id(&self, request_id: &Value) -> Arc<str>;

    /// The reply to a successful request; `None` if the format sends none.
    fn reply(&self, echo: &Echo<'_>, status: u16, data: Option<&RawValue>) -> Option<Bytes>;

    /// The reply to a failed request (always sent).
    fn error(&self, echo: &Echo<'_>, error: &ApiError) -> Bytes;
}

/// The `pk` argument.
fn pk_arg(args: &Map<String, Value>) -> Result<Input, ApiError> {
    match args.get("pk") {
        None | Some(Value::Null) => Err(ApiError::bad_request("\"pk\" is required.")),
        Some(pk) => Ok(Input::Json(pk.clone())),
    }
}
