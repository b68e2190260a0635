//! The CRUD actions, shared by the WebSocket protocol and HTTP: one place decides what `list`,
//! `retrieve`, `create`, `update`, `patch` and `delete` do, whichever transport asked.

use serde_json::value::RawValue;
use serde_json::{Map, Value};

use crate::app::App;
use crate::auth::Principal;
use crate::error::{ApiError, FieldErrors};
use crate::query::parse::QueryInput;
use crate::resource::action::ActionBinding;
use crate::resource::binding::{Binding, Collection, Input, PageRequest, Start};
use crate::resource::permissions::Action;
use crate::resource::tx;

/// One CRUD action with its arguments.
#[derive(Debug)]
pub enum Op {
    List {
        /// The filter and ordering, unchecked.
        query: QueryInput,
        limit: Option<i64>,
        offset: Option<i64>,
        /// A cursor (`next` of the page before).
        after: Option<Input>,
    },
    Retrieve {
        pk: Input,
    },
    Create {
        data: Map<String, Value>,
    },
    Update {
        pk: Input,
        data: Map<String, Value>,
        partial: bool,
    },
    Delete {
        pk: Input,
    },
}

impl Op {
    /// The action's name, as clients send it.
    pub fn name(&self) -> &'static str {
        match self {
            Op::List { .. } => "list",
            Op::Retrieve { .. } => "retrieve",
            Op::Create { .. } => "create",
            Op::Update { partial: true, .. } => "patch",
            Op::Update { partial: false, .. } => "update",
            Op::Delete { .. } => "delete",
        }
    }
}

/// A successful action.
#[derive(Debug)]
pub struct Outcome {
    pub status: u16,
    pub data: Option<Box<RawValue>>,
    /// For a create: the new object's pk as it appears in a URL.
    pub created_pk: Option<String>,
}

impl Outcome {
    fn ok(status: u16, data: Box<RawValue>) -> Self {
        Self {
            status,
            data: Some(data),
            created_pk: None,
        }
    }
}

/// Runs `op` on `binding` for `principal`.
pub async fn execute(
    app: &App,
    principal: &Principal,
    binding: &'static dyn Binding,
    op: Op,
) -> Result<Outcome, ApiError> {
    let op_name = op.name();
    let action = match &op {
        Op::List { .. } => Action::List,
        Op::Retrieve { .. } => Action::Retrieve,
        Op::Create { .. } => Action::Create,
        Op::Update { .. } => Action::Update,
        Op::Delete { .. } => Action::Delete,
    };
    if !binding.allows(principal, action) {
        return Err(ApiError::PermissionDenied);
    }
    let store = app.store();
    let who = principal.clone();
    // A stream that is not a collection (the `jobs` stream) has only `retrieve`.
    let collection = || -> Result<&'static dyn Collection, ApiError> {
        binding
            .collection()
            .ok_or_else(|| ApiError::MethodNotAllowed(Some(op_name.to_owned())))
    };
    match op {
        Op::List {
            query,
            limit,
            offset,
            after,
        } => {
            let list = collection()?;
            let query = binding.parse_query(principal, &query)?;
            let given_offset = offset.is_some();
            let (limit, offset) = app.config().page(limit, offset)?;
            let start = match after {
                None => Start::Offset(offset),
                Some(_) if given_offset => {
                    return Err(ApiError::Validation(FieldErrors::single(
                        "after",
                        "Cannot be used together with offset.",
                    )));
                }
                Some(Input::Json(Value::String(c)) | Input::Text(c)) => Start::After(c),
                Some(_) => {
                    return Err(ApiError::Validation(FieldErrors::single(
                        "after",
                        "Invalid cursor.",
                    )));
                }
            };
            let page = PageRequest { limit, start };
            let data = store
                .read(move |c| list.list(c, &who, &query, &page))
                .await?;
            Ok(Outcome::ok(200, data))
        }
        Op::Retrieve { pk } => {
            let data = store
                .read_point(move |c| binding.retrieve(c, &who, &pk))
                .await?;
            Ok(Outcome::ok(200, data))
        }
        Op::Create { data } => {
            let collection = collection()?;
            let written = tx::write(store, who, move |tx| collection.create(tx, &data)).await?;
            Ok(Outcome {
                status: 201,
                data: Some(written.data),
                created_pk: Some(written.pk_path),
            })
        }
        Op::Update { pk, data, partial } => {
            let collection = collection()?;
            let written = tx::write(store, who, move |tx| {
                collection.update(tx, &pk, &data, partial)
            })
            .await?;
            Ok(Outcome::ok(200, written.data))
        }
        Op::Delete { pk } => {
            let collection = collection()?;
            tx::write(store, who, move |tx| collection.delete(tx, &pk)).await?;
            Ok(Outcome {
                status: 204,
                data: None,
                created_pk: None,
            })
        }
    }
}

/// Runs a custom action (docs/protocol.md §5) for `principal`: its permission
/// (`Permissions::allows` with [`Action::Custom`]), then the action in one write transaction,
/// whose writes are published after the commit. 200 with what it returned.
pub async fn custom(
    app: &App,
    principal: &Principal,
    action: &'static dyn ActionBinding,
    pk: Option<Input>,
    args: Value,
) -> Result<Outcome, ApiError> {
    if !action
        .resource()
        .allows(principal, Action::Custom(action.name()))
    {
        return Err(ApiError::PermissionDenied);
    }
    let data = tx::write(app.store(), principal.clone(), move |tx| {
        action.run(tx, pk.as_ref(), &args)
    })
    .await?;
    Ok(Outcome::ok(200, data))
}
