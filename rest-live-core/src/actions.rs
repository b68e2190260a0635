//! The CRUD actions, shared by the WebSocket protocol and HTTP: one place decides what `list`,
//! `retrieve`, `create`, `update`, `patch` and `delete` do, whichever transport asked.

use serde_json::value::RawValue;
use serde_json::{Map, Value};

use crate::app::App;
use crate::auth::Principal;
use crate::binding::{Binding, Input};
use crate::error::ApiError;
use crate::permissions::Action;

/// One CRUD action with its arguments.
#[derive(Debug)]
pub enum Op {
    List {
        filters: Vec<(String, Input)>,
        limit: Option<i64>,
        offset: Option<i64>,
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
    match op {
        Op::List {
            filters,
            limit,
            offset,
        } => {
            let (limit, offset) = app.config().page(limit, offset)?;
            let data = store
                .read(move |c| binding.list(c, &who, &filters, limit, offset))
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
            let written = store
                .write(who, move |tx| binding.create(tx, &data))
                .await?;
            Ok(Outcome {
                status: 201,
                data: Some(written.data),
                created_pk: Some(written.pk_path),
            })
        }
        Op::Update { pk, data, partial } => {
            let written = store
                .write(who, move |tx| binding.update(tx, &pk, &data, partial))
                .await?;
            Ok(Outcome::ok(200, written.data))
        }
        Op::Delete { pk } => {
            store.write(who, move |tx| binding.delete(tx, &pk)).await?;
            Ok(Outcome {
                status: 204,
                data: None,
                created_pk: None,
            })
        }
    }
}
