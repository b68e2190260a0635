//! One source of truth for the names rest-live keeps for itself, shared by `rest-live-macros`
//! (which refuses them at compile time, spanned on the user's token) and `rest-live-core` (which
//! checks registrations made without the macro, and job names, at start-up). It has no
//! dependencies, so that the proc-macro crate stays light.

/// Stream names the framework keeps for itself (`jobs` is the stream of job states).
pub const RESERVED_STREAMS: &[&str] = &["jobs"];

/// The actions every resource may answer; a job (or a custom action) may not take these names.
pub const BUILT_IN_ACTIONS: &[&str] = &[
    "list",
    "retrieve",
    "create",
    "update",
    "patch",
    "delete",
    "subscribe",
    "unsubscribe",
    "subscribe_instance",
    "unsubscribe_instance",
];

/// The lookups a query condition may use (`priority__gte`), as `#[resource(filter(…))]` names
/// them and clients write them after `__`; the core's `Lookup` has one variant for each.
pub const LOOKUPS: &[&str] = &[
    "exact",
    "ne",
    "in",
    "lt",
    "lte",
    "gt",
    "gte",
    "isnull",
    "contains",
    "startswith",
    "icontains",
    "istartswith",
    "iexact",
];

/// Why `name` cannot be a stream name, if it cannot. A stream name is a URL path segment and a
/// WebSocket stream key, so it is kept to characters that need no escaping anywhere.
///
/// ```
/// assert_eq!(rest_live_names::check_stream_name("tasks"), None);
/// assert!(rest_live_names::check_stream_name("jobs").is_some());
/// assert!(rest_live_names::check_stream_name("my tasks").is_some());
/// ```
pub fn check_stream_name(name: &str) -> Option<String> {
    if name.is_empty() {
        return Some("the stream name is empty".into());
    }
    if !is_identifier(name) {
        return Some(format!(
            "stream \"{name}\" may only contain ASCII letters, digits, '_' and '-'"
        ));
    }
    if RESERVED_STREAMS.contains(&name) {
        return Some(format!("stream \"{name}\" is reserved by rest-live"));
    }
    None
}

/// Whether `name` is non-empty ASCII letters, digits, `_` and `-` (stream, job and action names).
pub fn is_identifier(name: &str) -> bool {
    !name.is_empty()
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages() {
        assert_eq!(
            check_stream_name("").as_deref(),
            Some("the stream name is empty")
        );
        assert_eq!(
            check_stream_name("my notes").as_deref(),
            Some("stream \"my notes\" may only contain ASCII letters, digits, '_' and '-'")
        );
        assert_eq!(
            check_stream_name("jobs").as_deref(),
            Some("stream \"jobs\" is reserved by rest-live")
        );
        assert_eq!(check_stream_name("task-lists_2"), None);
    }

    #[test]
    fn reserved_streams_are_not_actions() {
        for stream in RESERVED_STREAMS {
            assert!(!BUILT_IN_ACTIONS.contains(stream));
        }
    }
}
