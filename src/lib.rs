//! # rest-live
//!
//! Annotated diesel model structs become *live resources*: a REST API over HTTP and a multiplexed
//! WebSocket API (the `{stream, payload}` protocol of channels-api / djangochannelsrestframework),
//! where every committed change is pushed to the clients subscribed to it.
//!
//! ```ignore
//! use rest_live::prelude::*;
//!
//! #[resource(stream = "tasks")]             // HTTP /api/tasks/…, WebSocket stream "tasks"
//! #[subscribable]                           // subscribe_instance by pk
//! #[subscribable(group_key = "list_id")]    // subscribe {"group": {"list_id": 1}}
//! #[derive(Queryable, Serialize, Deserialize, Clone, Debug)]
//! #[diesel(table_name = tasks)]
//! pub struct Task {
//!     #[resource(read_only)] pub id: i32,
//!     #[resource(max_length = 140)] pub text: String,
//!     #[serde(default)] pub done: bool,
//!     pub list_id: i32,
//! }
//! ```
//!
//! ## Attributes
//! - `#[resource(stream = "…", permissions = Policy, label = "…", hooks, pk = "…", crate = "…")]`
//!   on the struct: `stream` is required; `permissions` names the [`Permissions`] policy; `label`
//!   is the django-rest-live model name; an `impl Hooks for Task` is found by itself (the `hooks`
//!   flag only states, checked, that there is one); `pk` defaults to `#[diesel(primary_key(…))]`
//!   or `id`; the diesel table is `#[diesel(table_name = …)]` (diesel's default otherwise).
//!   [`resource`] lists every key.
//! - `#[subscribable]` (by pk) and `#[subscribable(group_key = "field")]` (once per key).
//! - `#[actions]` on an `impl` block of the model, with `#[action(detail)]` / `#[action(collection)]`
//!   methods: the resource's custom actions ([`actions`] has the rules).
//! - On fields: `#[resource(read_only)]` (never taken from input), `#[resource(filter)]` (usable as
//!   a `list` filter; the pk and group keys always are), `#[resource(max_length = N)]`.
//!   `#[serde(default)]` and `Option<…>` make a field optional on create.
//!
//! ## Registrations that vanish
//! Resources register themselves at link time (`inventory`). A binary that never names the crate
//! holding them (e.g. your models crate, or your package's `lib.rs` from `main.rs`) does not link
//! it, and silently loses them: their streams answer 404. The remedies:
//! - name the crate: `use my_models as _;` anywhere in the binary;
//! - or register explicitly: `App::builder().register::<my_models::Task>()` (naming the type links
//!   the crate too; a type registered both ways counts once);
//! - and make start-up fail loudly: `.expect_streams(["tasks", …])` makes
//!   [`AppBuilder::build`] return [`Error::Registry`] naming each missing stream.
//!
//! Two resources declaring the same stream stop start-up the same way, naming both types.

#![warn(missing_docs)]
#![cfg_attr(docsrs, feature(doc_cfg))]

pub use rest_live_core::{
    Action, AllowAll, AnyConn, ApiError, App, AppBuilder, Authenticator, BoxFuture, Config, Cors,
    Error, FieldErrors, FieldMeta, Hooks, IpNet, Job, JobContext, JobError, Kind, Lookup,
    Permissions, Principal, Resource, ResourceMeta, Retention, Scope, TokenStore, Tx, WeakApp,
    register_job,
};
pub use rest_live_macros::{actions, resource, subscribable};

/// The warp filter serving every registered resource, and the server to run it with:
/// `rest_live::serve(app.clone(), rest_live::routes(app), listener).await`. (The adapter crate
/// itself is `rest_live_warp`.)
#[cfg(feature = "warp")]
pub use rest_live_warp::{Server, routes, serve};

#[doc(hidden)]
pub use rest_live_core::__private;

#[cfg(feature = "testing")]
#[cfg_attr(docsrs, doc(cfg(feature = "testing")))]
pub mod testing;

/// What a module declaring resources needs.
pub mod prelude {
    pub use crate::{
        Action, ApiError, App, FieldErrors, Hooks, Permissions, Principal, Scope, Tx, actions,
        resource, subscribable,
    };
}
