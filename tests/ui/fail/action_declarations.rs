// Every mistake in declaring custom actions is refused, spanned on the offending token, all in
// one compile.
use diesel::prelude::*;
use rest_live::prelude::*;
use serde::{Deserialize, Serialize};

diesel::table! {
    notes (id) {
        id -> Integer,
        body -> Text,
    }
}

#[resource(stream = "notes")]
#[derive(Queryable, Serialize, Deserialize, Clone, Debug)]
#[diesel(table_name = notes)]
pub struct Note {
    #[resource(read_only)]
    pub id: i32,
    pub body: String,
}

#[derive(Deserialize)]
pub struct Args {
    pub n: i32,
}

#[actions]
impl Note {
    #[action]
    fn no_kind(&mut self, _tx: &mut Tx<'_>) -> Result<(), ApiError> {
        Ok(())
    }

    #[action(detail, collection)]
    fn both(&mut self, _tx: &mut Tx<'_>) -> Result<(), ApiError> {
        Ok(())
    }

    #[action(instance)]
    fn unknown_kind(&mut self, _tx: &mut Tx<'_>) -> Result<(), ApiError> {
        Ok(())
    }

    #[action(detail)]
    async fn later(&mut self, _tx: &mut Tx<'_>) -> Result<(), ApiError> {
        Ok(())
    }

    #[action(collection)]
    fn generic<T>(_tx: &mut Tx<'_>) -> Result<(), ApiError> {
        Ok(())
    }

    #[action(collection)]
    fn list(_tx: &mut Tx<'_>) -> Result<(), ApiError> {
        Ok(())
    }

    #[action(detail)]
    fn no_self(_tx: &mut Tx<'_>) -> Result<(), ApiError> {
        Ok(())
    }

    #[action(collection)]
    fn with_self(&self, _tx: &mut Tx<'_>) -> Result<(), ApiError> {
        Ok(())
    }

    #[action(detail)]
    fn by_value(self, _tx: &mut Tx<'_>) -> Result<(), ApiError> {
        Ok(())
    }

    #[action(collection)]
    fn no_tx() -> Result<(), ApiError> {
        Ok(())
    }

    #[action(collection)]
    fn shared_tx(_tx: &Tx<'_>) -> Result<(), ApiError> {
        Ok(())
    }

    #[action(collection)]
    fn two_args(_tx: &mut Tx<'_>, _a: Args, _b: Args) -> Result<(), ApiError> {
        Ok(())
    }

    #[action(collection)]
    fn no_result(_tx: &mut Tx<'_>) -> i32 {
        1
    }

    #[action(collection)]
    fn nothing_returned(_tx: &mut Tx<'_>) {}
}

struct Other;

#[actions]
impl Clone for Other {
    fn clone(&self) -> Self {
        Other
    }
}

#[actions]
impl Other {
    fn helper(&self) {}
}

fn main() {}
