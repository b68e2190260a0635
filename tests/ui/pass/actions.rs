// Custom actions of every shape compile: detail (`&mut self`, `&self`), collection, with and
// without arguments, any `Serialize` result, any error convertible into `ApiError`.
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
pub struct Rename {
    pub body: String,
}

/// Opaque to tracing (no `Deserialize`): still a valid result.
#[derive(Serialize)]
pub struct Receipt {
    pub ok: bool,
}

#[actions]
impl Note {
    /// Renames the note.
    #[action(detail)]
    fn rename(&mut self, _tx: &mut Tx<'_>, args: Rename) -> Result<Note, ApiError> {
        self.body = args.body;
        Ok(self.clone())
    }

    /// How long the note is.
    #[action(detail)]
    fn length(&self, _tx: &mut Tx<'_>) -> Result<usize, FieldErrors> {
        Ok(self.body.len())
    }

    /// Every note.
    #[action(collection)]
    fn everything(tx: &mut Tx<'_>) -> Result<Vec<Note>, ApiError> {
        tx.filter(&serde_json::Map::new())
    }

    #[action(collection)]
    fn receipt(_tx: &mut Tx<'_>) -> Result<Receipt, ApiError> {
        Ok(Receipt { ok: true })
    }

    /// Not an action: left as it is.
    fn helper(&self) -> usize {
        self.body.len()
    }
}

fn main() {
    let note = Note { id: 1, body: "abc".into() };
    assert_eq!(note.helper(), 3);
}
