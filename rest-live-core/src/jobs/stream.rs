//! The `jobs` stream: job states as a read-only resource. Clients `retrieve` and
//! `subscribe_instance` a job by id (its owner only); it has no collection actions (405).

use serde_json::value::RawValue;
use serde_json::{Map, Value};

use super::record::{JOBS_STREAM, load};
use crate::auth::Principal;
use crate::config::Config;
use crate::error::ApiError;
use crate::resource::binding::{Binding, Collection, Input};
use crate::resource::permissions::Action;
use crate::resource::{FieldMeta, Kind, ResourceMeta, to_raw};
use crate::store::AnyConn;

/// The `jobs` stream as a resource: clients `retrieve` and `subscribe_instance` a job by id (its
/// owner only); nothing else.
pub struct JobsBinding;

pub static JOBS_BINDING: JobsBinding = JobsBinding;

const JOB_FIELDS: &[FieldMeta] = &[
    field("id", "String"),
    field("state", "String"),
    field("resource_uri", "String"),
    field("result_uri", "Option<String>"),
];

const fn field(name: &'static str, rust_type: &'static str) -> FieldMeta {
    FieldMeta {
        name,
        rust_type,
        read_only: true,
        required: false,
        filterable: false,
        lookups: &[],
        orderable: false,
        kind: Kind::Text,
        nullable: false,
        max_length: None,
    }
}

static JOBS_META: ResourceMeta = ResourceMeta {
    stream: JOBS_STREAM,
    label: "rest_live.Job",
    type_name: "rest_live_core::Job",
    location: concat!(file!(), ":", line!()),
    pk: "id",
    fields: JOB_FIELDS,
    group_keys: &[],
    instance_subscribable: true,
    ordering: &[],
};

fn job_id(pk: &Input) -> Result<String, ApiError> {
    match pk {
        Input::Json(Value::String(s)) | Input::Text(s) => Ok(s.clone()),
        _ => Err(ApiError::bad_request("Invalid pk: a job id is a string.")),
    }
}

impl Binding for JobsBinding {
    fn meta(&self) -> &'static ResourceMeta {
        &JOBS_META
    }

    fn type_id(&self) -> std::any::TypeId {
        std::any::TypeId::of::<JobsBinding>()
    }

    fn canonical_pk(&self, pk: &Input) -> Result<String, ApiError> {
        Ok(Value::from(job_id(pk)?).to_string())
    }

    fn canonical_group(&self, _key: &str, _value: &Value) -> Option<Result<String, ApiError>> {
        None
    }

    /// Anyone may ask: which job a principal sees is decided per job (its owner), and the actions
    /// the stream does not support answer 405 (not 403, which would say that someone else may).
    fn allows(&self, _principal: &Principal, _action: Action) -> bool {
        true
    }

    fn restricted(&self) -> bool {
        true
    }

    fn audience(&self, principal: &Principal) -> String {
        format!("job-owner:{}", Value::from(principal.id.clone()))
    }

    fn visible(&self, principal: &Principal, object: &Map<String, Value>) -> bool {
        principal.is_system()
            || object.get("owner").unwrap_or(&Value::Null) == &Value::from(principal.id.clone())
    }

    fn present(&self, _principal: &Principal, object: &mut Map<String, Value>) {
        object.remove("owner");
    }

    fn retrieve(
        &self,
        conn: AnyConn<'_>,
        principal: &Principal,
        pk: &Input,
    ) -> Result<Box<RawValue>, ApiError> {
        let id = job_id(pk)?;
        let record = load(conn, &id)?.ok_or(ApiError::NotFound)?;
        if !record.visible_to(principal) {
            return Err(ApiError::NotFound);
        }
        // The prefix is not known here; the default one is used for the URIs of a retrieve.
        let mut state = record.state_json(&Config::default().http_prefix);
        state.remove("owner");
        to_raw(&state)
    }

    /// No collection: `list`, `create`, `update`, `patch` and `delete` answer 405.
    fn collection(&self) -> Option<&dyn Collection> {
        None
    }

    /// The job records are rest-live's own table, created by its migrations.
    fn table(&self) -> Option<&'static str> {
        None
    }

    fn probe_table(&self, _conn: AnyConn<'_>) -> diesel::QueryResult<()> {
        Ok(())
    }

    /// Visibility is decided per job (its owner), not by a scope.
    fn unfilterable_scope(&self, _principal: &Principal) -> Vec<String> {
        Vec::new()
    }

    /// Jobs are not listed: their stream has no query.
    fn parse_query(
        &self,
        _principal: &Principal,
        _input: &crate::query::parse::QueryInput,
    ) -> Result<crate::query::Query, ApiError> {
        Err(ApiError::MethodNotAllowed(Some("list".to_owned())))
    }
}
