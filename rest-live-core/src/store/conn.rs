//! A borrowed connection of whichever backend the application runs on, and the macro that runs
//! one body of typed diesel code on each backend compiled in.

use diesel::sqlite::SqliteConnection;

#[cfg(feature = "postgres")]
use diesel::pg::PgConnection;

/// A borrowed connection of whichever backend the application runs on. Generated code matches on it
/// through [`crate::__with_conn!`], so one body of typed diesel code serves every backend.
pub enum AnyConn<'a> {
    /// A SQLite connection.
    Sqlite(&'a mut SqliteConnection),
    #[cfg(feature = "postgres")]
    /// A PostgreSQL connection (the `postgres` feature).
    Pg(&'a mut PgConnection),
}

impl AnyConn<'_> {
    /// A shorter-lived copy, to pass on while keeping this one.
    pub fn reborrow(&mut self) -> AnyConn<'_> {
        match self {
            AnyConn::Sqlite(c) => AnyConn::Sqlite(c),
            #[cfg(feature = "postgres")]
            AnyConn::Pg(c) => AnyConn::Pg(c),
        }
    }
}

/// Runs a body of typed diesel code on whichever backend `conn` (an [`AnyConn`]) holds, with
/// `$c` bound to the concrete connection and `__Backend` to its backend type. The body is
/// repeated once per backend compiled into this crate; generated code uses this so that adding a
/// backend changes this macro only.
#[cfg(feature = "postgres")]
#[doc(hidden)]
#[macro_export]
macro_rules! __with_conn {
    ($conn:expr, |$c:ident| $body:expr) => {
        match $conn {
            $crate::__private::AnyConn::Sqlite($c) => {
                #[allow(dead_code)]
                type __Backend = $crate::__private::diesel::sqlite::Sqlite;
                $body
            }
            $crate::__private::AnyConn::Pg($c) => {
                #[allow(dead_code)]
                type __Backend = $crate::__private::diesel::pg::Pg;
                $body
            }
        }
    };
}

/// [`__with_conn!`] for a build with SQLite only.
#[cfg(not(feature = "postgres"))]
#[doc(hidden)]
#[macro_export]
macro_rules! __with_conn {
    ($conn:expr, |$c:ident| $body:expr) => {
        match $conn {
            $crate::__private::AnyConn::Sqlite($c) => {
                #[allow(dead_code)]
                type __Backend = $crate::__private::diesel::sqlite::Sqlite;
                $body
            }
        }
    };
}
