//! An action and a job of one stream with the same name stop start-up, naming both. In a file of
//! its own: registrations are global to a test binary, so the clash would break every other test
//! linked with it.

use diesel::prelude::*;
use rest_live::prelude::*;
use rest_live::{Job, JobContext, JobError};
use serde::{Deserialize, Serialize};

diesel::table! {
    chores (id) {
        id -> Integer,
        body -> Text,
    }
}

#[resource(stream = "chores")]
#[derive(Queryable, Serialize, Deserialize, Clone, Debug)]
#[diesel(table_name = chores)]
pub struct Chore {
    #[resource(read_only)]
    pub id: i32,
    pub body: String,
}

#[actions]
impl Chore {
    /// Sweeps now.
    #[action(collection)]
    fn sweep(_tx: &mut Tx<'_>) -> Result<bool, ApiError> {
        Ok(true)
    }
}

/// Sweeps later, under the same name.
pub struct SweepLater;

impl Job for SweepLater {
    type Resource = Chore;
    type Args = serde_json::Value;
    type Output = bool;
    const NAME: &'static str = "sweep";

    async fn run(_ctx: JobContext, _args: Self::Args) -> Result<bool, JobError> {
        Ok(true)
    }
}

rest_live::register_job!(SweepLater);

#[tokio::test]
async fn an_action_and_a_job_of_one_name_stop_start_up_naming_both() {
    let result = App::builder().database_url("sqlite::memory:").build().await;
    let Err(error) = result else {
        panic!("start-up must fail when an action and a job share a name");
    };
    assert!(matches!(error, rest_live::Error::Registry(_)), "{error:?}");
    let message = error.to_string();
    assert!(message.contains("`sweep`"), "{message}");
    assert!(
        message.contains("registry_action_clash.rs:"),
        "the action's place: {message}"
    );
    assert!(message.contains("SweepLater"), "the job: {message}");
    assert!(message.contains("\"chores\""), "{message}");
}
