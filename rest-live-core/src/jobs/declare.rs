//! Declaring jobs: the [`Job`] trait users implement, its type-erased [`JobBinding`], and the
//! registration ([`crate::register_job!`]).

use std::future::Future;
use std::marker::PhantomData;

use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::Value;

use super::context::JobContext;
use super::error::JobError;
use crate::auth::BoxFuture;
use crate::error::{ApiError, FieldErrors};
use crate::resource::Resource;
use crate::resource::binding::{Binding, Bound};

/// A job declared on a resource. Register it with [`crate::register_job!`] (or
/// [`crate::AppBuilder::job`]).
///
/// It is started with `POST /api/<stream>/<NAME>/` (or `POST /api/<stream>/<pk>/<NAME>/` when
/// [`Job::ON_OBJECT`]), or with the action `NAME` on the resource's WebSocket stream; the body
/// (or `data`) holds its arguments, checked before anything is queued (400).
pub trait Job: Send + Sync + 'static {
    /// The resource the job is declared on (its stream is where it is started).
    type Resource: Resource;
    /// The arguments, read from the request's `data` (400 naming the argument when they do not fit).
    type Args: DeserializeOwned + Send + 'static;
    /// What the job returns: its result (`GET /api/jobs/<id>/result/`).
    type Output: Serialize + Send + 'static;

    /// The action name; not one of the built-in actions.
    const NAME: &'static str;
    /// A job on one object (its pk is in [`JobContext::pk`]) rather than on the collection.
    const ON_OBJECT: bool = false;

    /// Checks arguments beyond their types, before the job is queued.
    fn validate(args: &Self::Args) -> Result<(), FieldErrors> {
        let _ = args;
        Ok(())
    }

    /// The work. Its writes go through [`JobContext::transaction`], so they produce events and
    /// stop once the job is cancelled.
    fn run(
        ctx: JobContext,
        args: Self::Args,
    ) -> impl Future<Output = Result<Self::Output, JobError>> + Send;
}

/// A registered job, type-erased.
pub trait JobBinding: Send + Sync + 'static {
    fn resource(&self) -> &'static dyn Binding;
    fn name(&self) -> &'static str;
    fn on_object(&self) -> bool;
    /// The job's type (for start-up errors).
    fn type_name(&self) -> &'static str;
    /// Checks the arguments (400 with what is wrong).
    fn check(&self, args: &Value) -> Result<(), ApiError>;
    fn run(&self, ctx: JobContext, args: Value) -> BoxFuture<'static, Result<Value, JobError>>;
}

/// The `JobBinding` of job `J`.
pub struct JobBound<J>(PhantomData<fn() -> J>);

impl<J> JobBound<J> {
    /// The one value (it holds nothing).
    pub const INSTANCE: Self = JobBound(PhantomData);
}

fn parse_args<J: Job>(args: &Value) -> Result<J::Args, ApiError> {
    let args = crate::resource::args::parse::<J::Args>(args)?;
    J::validate(&args)?;
    Ok(args)
}

impl<J: Job> JobBinding for JobBound<J> {
    fn resource(&self) -> &'static dyn Binding {
        &Bound::<J::Resource>::INSTANCE
    }

    fn name(&self) -> &'static str {
        J::NAME
    }

    fn on_object(&self) -> bool {
        J::ON_OBJECT
    }

    fn type_name(&self) -> &'static str {
        std::any::type_name::<J>()
    }

    fn check(&self, args: &Value) -> Result<(), ApiError> {
        parse_args::<J>(args).map(|_| ())
    }

    fn run(&self, ctx: JobContext, args: Value) -> BoxFuture<'static, Result<Value, JobError>> {
        Box::pin(async move {
            let args = parse_args::<J>(&args)?;
            let output = J::run(ctx, args).await?;
            serde_json::to_value(output).map_err(|e| JobError(e.to_string()))
        })
    }
}

/// Submitted by [`crate::register_job!`].
pub struct JobRegistration {
    /// The job.
    pub job: &'static dyn JobBinding,
}

inventory::collect!(JobRegistration);

/// Registers a [`Job`] so that every app serves it: `rest_live::register_job!(ArchiveDone);`
#[macro_export]
macro_rules! register_job {
    ($job:ty) => {
        $crate::__private::inventory::submit! {
            $crate::__private::JobRegistration { job: &$crate::__private::JobBound::<$job>::INSTANCE }
        }
    };
}
