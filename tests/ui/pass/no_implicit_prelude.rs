//! The generated code names everything by absolute path, so it compiles without any prelude.
//! diesel's own derive does not (it names `std` and `diesel`), so `Queryable` is written out; the
//! table is diesel's default for `Note`, `notes`.

diesel::table! {
    notes (id) {
        id -> Integer,
        body -> Text,
        tag -> Nullable<Text>,
        list_id -> Integer,
    }
}

mod m {
    #![no_implicit_prelude]

    use super::notes;

    fn default_list() -> i32 {
        1
    }

    #[::rest_live::resource(stream = "notes")]
    #[::rest_live::subscribable]
    #[::rest_live::subscribable(group_key = "list_id")]
    #[derive(
        ::serde::Serialize, ::serde::Deserialize, ::core::clone::Clone, ::core::fmt::Debug,
    )]
    pub struct Note {
        #[resource(read_only)]
        pub id: i32,
        #[resource(max_length = 140, filter)]
        pub body: ::std::string::String,
        #[resource(max_length = 20, filter)]
        pub tag: ::core::option::Option<::std::string::String>,
        #[serde(default = "default_list")]
        pub list_id: i32,
    }

    type Row = (
        i32,
        ::std::string::String,
        ::core::option::Option<::std::string::String>,
        i32,
    );

    impl<__ST, __DB> ::diesel::deserialize::Queryable<__ST, __DB> for Note
    where
        __DB: ::diesel::backend::Backend,
        Row: ::diesel::deserialize::FromStaticSqlRow<__ST, __DB>,
    {
        type Row = Row;

        fn build((id, body, tag, list_id): Row) -> ::diesel::deserialize::Result<Self> {
            ::core::result::Result::Ok(Self {
                id,
                body,
                tag,
                list_id,
            })
        }
    }

    #[derive(::serde::Deserialize)]
    pub struct Retag {
        pub tag: ::std::string::String,
    }

    #[::rest_live::actions]
    impl Note {
        /// Retags the note.
        #[action(detail)]
        fn retag(
            &mut self,
            _tx: &mut ::rest_live::Tx<'_>,
            args: Retag,
        ) -> ::core::result::Result<Note, ::rest_live::ApiError> {
            self.tag = ::core::option::Option::Some(args.tag);
            ::core::result::Result::Ok(::core::clone::Clone::clone(self))
        }

        /// How many notes there are.
        #[action(collection)]
        fn count(
            tx: &mut ::rest_live::Tx<'_>,
        ) -> ::core::result::Result<usize, ::rest_live::ApiError> {
            let all: ::std::vec::Vec<Note> = tx.filter(&::serde_json::Map::new())?;
            ::core::result::Result::Ok(all.len())
        }
    }
}

fn main() {
    let meta = <m::Note as rest_live::Resource>::META;
    assert_eq!(meta.group_keys, ["list_id"]);
}
