//! Errors. [`ApiError`] is what a client sees (it carries its protocol status); [`Error`] is what stops
//! the application from starting. Both are converted to wire form at one boundary: [`ApiError::errors`].

use std::collections::BTreeMap;

use serde_json::Value;

/// Per-field validation messages, rendered as `[{"<field>": ["<message>", …]}]`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FieldErrors(BTreeMap<String, Vec<String>>);

impl FieldErrors {
    /// The key DRF clients know for errors that belong to no single field.
    pub const NON_FIELD: &'static str = "non_field_errors";

    /// No errors yet.
    pub fn new() -> Self {
        Self::default()
    }

    /// One error on one field.
    ///
    /// ```
    /// # use rest_live_core::FieldErrors;
    /// let e = FieldErrors::single("text", "This field may not be blank.");
    /// assert!(!e.is_empty());
    /// ```
    pub fn single(field: impl Into<String>, message: impl Into<String>) -> Self {
        let mut errors = Self::new();
        errors.add(field, message);
        errors
    }

    /// Adds `message` to `field`'s errors.
    pub fn add(&mut self, field: impl Into<String>, message: impl Into<String>) {
        self.0.entry(field.into()).or_default().push(message.into());
    }

    /// Whether there is no error at all.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// Each field with its messages, in field order.
    pub fn fields(&self) -> impl Iterator<Item = (&str, &[String])> {
        self.0.iter().map(|(k, v)| (k.as_str(), v.as_slice()))
    }

    fn to_json(&self) -> Value {
        Value::Object(
            self.0
                .iter()
                .map(|(k, v)| (k.clone(), Value::from(v.clone())))
                .collect(),
        )
    }
}

/// What a caught panic said (its `&str` or `String` payload), for the log.
pub(crate) fn panic_message(payload: &(dyn std::any::Any + Send)) -> String {
    payload
        .downcast_ref::<&str>()
        .map(|s| (*s).to_owned())
        .or_else(|| payload.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "a panic".into())
}

/// A failed request, with the status it is answered with (docs/protocol.md, "Errors").
#[derive(Debug, Clone, thiserror::Error)]
pub enum ApiError {
    /// Malformed frame or body, bad argument types, a `pk` of the wrong type.
    #[error("{0}")]
    BadRequest(String),
    /// Validation of incoming data failed.
    #[error("validation failed: {0:?}")]
    Validation(FieldErrors),
    /// No valid credential where one is needed.
    #[error("unauthorized: {0}")]
    Unauthorized(&'static str),
    /// The principal may not perform this action.
    #[error("permission denied")]
    PermissionDenied,
    /// A WebSocket handshake from an Origin that is not allowed.
    #[error("origin not allowed")]
    OriginNotAllowed,
    /// No such object, or one the principal may not read (existence never leaks), or no such subscription.
    #[error("not found")]
    NotFound,
    /// No resource serves this stream.
    #[error("unknown stream {0:?}")]
    UnknownStream(String),
    /// Unknown action, or one this resource does not allow. `None` when the request named no action.
    #[error("method {0:?} not allowed")]
    MethodNotAllowed(Option<String>),
    /// A write conflicts with a constraint; the message names the constraint.
    #[error("conflict: {0}")]
    Conflict(String),
    /// `since` is older than the retained change log.
    #[error("resync required")]
    ResyncRequired,
    /// The request body is over `Config::max_body_bytes` (413).
    #[error("payload too large")]
    PayloadTooLarge,
    /// An HTTP body that is not declared as JSON (415).
    #[error("unsupported media type")]
    UnsupportedMediaType,
    /// The principal, address or connection made too many requests (429).
    #[error("throttled")]
    Throttled,
    /// The connection holds as many live queries as it may (429).
    #[error("too many subscriptions")]
    TooManySubscriptions,
    /// Anything unexpected. The detail is logged, never sent.
    #[error("internal error: {0}")]
    Internal(String),
}

impl ApiError {
    /// The status the error is answered with (HTTP, and `response_status` on a socket).
    pub fn status(&self) -> u16 {
        match self {
            Self::BadRequest(_) | Self::Validation(_) => 400,
            Self::Unauthorized(_) => 401,
            Self::PermissionDenied | Self::OriginNotAllowed => 403,
            Self::NotFound | Self::UnknownStream(_) => 404,
            Self::MethodNotAllowed(_) => 405,
            Self::Conflict(_) => 409,
            Self::ResyncRequired => 410,
            Self::PayloadTooLarge => 413,
            Self::UnsupportedMediaType => 415,
            Self::Throttled | Self::TooManySubscriptions => 429,
            Self::Internal(_) => 500,
        }
    }

    /// The `errors` list of the reply.
    pub fn errors(&self) -> Vec<Value> {
        let text = match self {
            Self::BadRequest(m) | Self::Conflict(m) => m.clone(),
            Self::Validation(fields) => return vec![fields.to_json()],
            Self::Unauthorized(m) => (*m).into(),
            Self::PermissionDenied => "You do not have permission to perform this action.".into(),
            Self::OriginNotAllowed => "Origin not allowed.".into(),
            Self::NotFound => "Not found".into(),
            Self::UnknownStream(s) => format!("Unknown stream {}", Value::from(s.as_str())),
            Self::MethodNotAllowed(m) => format!(
                "Method {} not allowed.",
                Value::from(m.as_deref().unwrap_or("null"))
            ),
            Self::ResyncRequired => "resync required".into(),
            Self::PayloadTooLarge => "Request body is too large.".into(),
            Self::UnsupportedMediaType => "Unsupported media type: send application/json.".into(),
            Self::Throttled => "Request was throttled.".into(),
            Self::TooManySubscriptions => "Too many subscriptions.".into(),
            Self::Internal(_) => "Internal error".into(),
        };
        vec![Value::String(text)]
    }

    /// A 400 with this message.
    pub fn bad_request(message: impl Into<String>) -> Self {
        Self::BadRequest(message.into())
    }

    /// An unexpected failure: logged here with its detail, answered with a bare 500.
    pub fn internal(detail: impl std::fmt::Display) -> Self {
        tracing::error!(error = %detail, "internal error");
        Self::Internal(detail.to_string())
    }
}

impl From<FieldErrors> for ApiError {
    fn from(errors: FieldErrors) -> Self {
        Self::Validation(errors)
    }
}

impl From<diesel::result::Error> for ApiError {
    fn from(error: diesel::result::Error) -> Self {
        use diesel::result::{DatabaseErrorKind as K, Error as E};
        match error {
            E::NotFound => Self::NotFound,
            E::DatabaseError(
                kind @ (K::UniqueViolation
                | K::ForeignKeyViolation
                | K::NotNullViolation
                | K::CheckViolation),
                info,
            ) => {
                let what = match kind {
                    K::UniqueViolation => "unique constraint",
                    K::ForeignKeyViolation => "foreign key constraint",
                    K::NotNullViolation => "not-null constraint",
                    _ => "check constraint",
                };
                let name = info
                    .constraint_name()
                    .map(str::to_owned)
                    .unwrap_or_else(|| info.message().to_owned());
                Self::Conflict(format!("{what} violated: {name}"))
            }
            other => Self::internal(other),
        }
    }
}

/// Why the application could not start or serve, or why its own code's request failed: what a
/// `main` returning `Result<(), rest_live::Error>` meets, so that `?` works on each step. Its
/// `Debug` is its message, which is what such a `main` prints when it fails.
#[derive(thiserror::Error)]
pub enum Error {
    /// A setting is missing or contradicts another.
    #[error("configuration: {0}")]
    Config(String),
    /// The registered resources do not add up: a stream declared twice, or an expected one missing.
    #[error("resource registry: {0}")]
    Registry(String),
    /// The database cannot be opened or used.
    #[error("database: {0}")]
    Database(String),
    /// The migrations (the application's or rest-live's own) failed.
    #[error("migrations: {0}")]
    Migration(String),
    /// Binding a listener, reading a file.
    #[error("i/o: {0}")]
    Io(#[from] std::io::Error),
    /// A request the application's own code made (`App::transaction`, `App::system`) failed.
    #[error("request failed: {0}")]
    Api(#[from] ApiError),
}

impl std::fmt::Debug for Error {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        std::fmt::Display::fmt(self, f)
    }
}
